//! What the terminal UI shows and how keys change it: the model (lanes, batch progress, last
//! results, log, the questions waiting for the operator) and its drawing, laid out to be read on
//! an 80×24 terminal. Pure but for drawing into a ratatui frame; every text from a token or a
//! server is made printable before it is drawn.
//!
//! Owns: the model and the keys' meaning. Does not own: the terminal (see the parent module).

use super::question::{Answer, Question};
use super::ToUi;
use crate::station::events::{Event, Summary, TokenName};
use crate::station::report::Row;
use crate::station::Control;
use crate::text::plain;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Gauge, Paragraph, Wrap};
use ratatui::Frame;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Instant;
use zeroize::Zeroizing;

pub enum Key {
    Char(char),
    Enter,
    Esc,
    Backspace,
    Interrupt,
}

pub enum Action {
    Control(Control),
    Quit,
}

struct Asked {
    id: u64,
    question: Question,
    reply: std::sync::mpsc::Sender<Answer>,
}

struct LaneView {
    token: TokenName,
    user: String,
    phase: &'static str,
    since: Instant,
}

pub struct Model {
    title: String,
    rows: Vec<String>,
    /// Each batch row's latest outcome, by lowercased username.
    settled: HashMap<String, String>,
    /// Every token's outcome, counted (without a batch, what the counts show).
    outcomes: HashMap<String, usize>,
    lanes: BTreeMap<String, LaneView>,
    results: VecDeque<Row>,
    log: VecDeque<String>,
    questions: VecDeque<Asked>,
    input: Zeroizing<String>,
    paused: bool,
    locked: Option<String>,
    /// "Lanes are busy: quit anyway?" is on screen.
    quitting: bool,
    summary: Option<Summary>,
    spin: usize,
}

const SPINNER: [char; 4] = ['|', '/', '-', '\\'];

impl Model {
    pub fn new(rows: Vec<String>, title: String) -> Self {
        Self {
            title,
            rows,
            settled: HashMap::new(),
            outcomes: HashMap::new(),
            lanes: BTreeMap::new(),
            results: VecDeque::new(),
            log: VecDeque::new(),
            questions: VecDeque::new(),
            input: Zeroizing::new(String::new()),
            paused: false,
            locked: None,
            quitting: false,
            summary: None,
            spin: 0,
        }
    }

    pub fn tick(&mut self) {
        self.spin = self.spin.wrapping_add(1);
    }

    fn say(&mut self, line: String) {
        self.log.push_back(line);
        while self.log.len() > 200 {
            self.log.pop_front();
        }
    }

    fn phase(&mut self, token: &TokenName, user: Option<&str>, phase: &'static str) {
        let lane = self.lanes.entry(token.id()).or_insert_with(|| LaneView {
            token: token.clone(),
            user: String::new(),
            phase,
            since: Instant::now(),
        });
        lane.phase = phase;
        if let Some(u) = user {
            lane.user = u.to_string();
        }
    }

    pub fn apply(&mut self, m: ToUi) {
        match m {
            ToUi::Ask {
                id,
                question,
                reply,
            } => self.questions.push_back(Asked {
                id,
                question,
                reply,
            }),
            ToUi::Withdraw(id) => {
                if self.questions.front().is_some_and(|q| q.id == id) {
                    self.input = Zeroizing::new(String::new());
                }
                self.questions.retain(|q| q.id != id);
            }
            ToUi::Event(e) => self.event(*e),
            ToUi::End => {}
        }
    }

    fn event(&mut self, e: Event) {
        match e {
            Event::Seen {
                token, username, ..
            } => self.phase(&token, username.as_deref(), "ready"),
            Event::WaitingPin {
                token, username, ..
            } => self.phase(&token, Some(&username), "waiting for the PIN"),
            Event::Signing { token, .. } => self.phase(&token, None, "signing"),
            Event::Registering { token, .. } => self.phase(&token, None, "registering"),
            Event::Done { row } => {
                let id = TokenName {
                    reader: row.reader.clone(),
                    label: row.token_label.clone(),
                    serial: row.token_serial.clone(),
                }
                .id();
                self.lanes.remove(&id);
                *self.outcomes.entry(row.outcome.clone()).or_default() += 1;
                if !row.username.is_empty() {
                    self.settled
                        .insert(row.username.to_lowercase(), row.outcome.clone());
                }
                let line = crate::station::headless::line(&Event::Done { row: row.clone() });
                self.say(line);
                self.results.push_front(row);
                self.results.truncate(5);
            }
            Event::Removed { token, .. } => {
                self.lanes.remove(&token.id());
                self.say(crate::station::headless::line(&Event::Removed {
                    time: String::new(),
                    token,
                    username: None,
                }));
            }
            Event::Locked { admin, .. } => self.locked = Some(admin),
            Event::Unlocked { .. } => self.locked = None,
            Event::Summary { summary, .. } => self.summary = Some(summary),
            e @ Event::Log { .. } => self.say(crate::station::headless::line(&e)),
        }
    }

    /// The token whose question is on screen, else the lane that has waited longest.
    fn current_token(&self) -> Option<String> {
        self.questions
            .front()
            .and_then(|q| q.question.token_id())
            .or_else(|| {
                self.lanes
                    .iter()
                    .min_by_key(|(_, l)| l.since)
                    .map(|(id, _)| id.clone())
            })
    }

    fn answer(&mut self, a: Answer) {
        if let Some(q) = self.questions.pop_front() {
            let _ = q.reply.send(a);
        }
        self.input = Zeroizing::new(String::new());
    }

    pub fn key(&mut self, key: Key) -> Option<Action> {
        if self.quitting {
            self.quitting = false;
            return matches!(key, Key::Char('y' | 'Y') | Key::Interrupt).then_some(Action::Quit);
        }
        if let Key::Interrupt = key {
            return self.quit();
        }
        if let Some(q) = self.questions.front() {
            let typed = q.question.typed();
            match (key, typed) {
                (Key::Esc, _) => self.answer(Answer::Cancel),
                // An empty field is not an answer (a stray Enter must not cancel a PIN).
                (Key::Enter, true) if self.input.is_empty() => {}
                (Key::Enter, true) => {
                    let text = std::mem::replace(&mut self.input, Zeroizing::new(String::new()));
                    self.answer(Answer::Text(text));
                }
                (Key::Backspace, true) => {
                    self.input.pop();
                }
                (Key::Char(c), true) if !c.is_control() && self.input.len() < 256 => {
                    self.input.push(c)
                }
                (Key::Enter, false) if matches!(q.question, Question::Confirm(_)) => {
                    self.answer(Answer::Yes)
                }
                (Key::Char('y' | 'Y'), false) => self.answer(Answer::Yes),
                (Key::Char('n' | 'N'), false) => self.answer(Answer::No),
                _ => {}
            }
            return None;
        }
        match key {
            Key::Char('p') => {
                self.paused = !self.paused;
                Some(Action::Control(Control::Pause(self.paused)))
            }
            Key::Char('s') => self
                .current_token()
                .map(|id| Action::Control(Control::Skip(id))),
            Key::Char('q') => self.quit(),
            _ => None,
        }
    }

    fn quit(&mut self) -> Option<Action> {
        if self.lanes.is_empty() {
            Some(Action::Quit)
        } else {
            self.quitting = true;
            None
        }
    }
}

pub fn draw(f: &mut Frame<'_>, m: &Model) {
    let lanes_h = (m.lanes.len().max(1) as u16 + 2).min(8);
    let [top, lanes, batch, results, log, keys] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(lanes_h),
        Constraint::Length(3),
        Constraint::Length(7),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(f.area());
    let mut flags = String::new();
    if m.paused {
        flags.push_str("  [PAUSED]");
    }
    if let Some(a) = &m.locked {
        flags.push_str(&format!("  [LOCKED: log in as {}]", plain(a)));
    }
    f.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(
                "tokenroll station  ",
                Style::new().add_modifier(Modifier::BOLD),
            ),
            Span::raw(plain(&m.title).into_owned()),
            Span::styled(flags, Style::new().fg(Color::Yellow)),
        ])),
        top,
    );
    let spin = SPINNER[m.spin % SPINNER.len()];
    let lane_lines: Vec<Line<'_>> = if m.lanes.is_empty() {
        vec![Line::raw("Insert a token.")]
    } else {
        m.lanes
            .values()
            .map(|l| {
                Line::raw(format!(
                    "{spin} {:<14} {:<16} {:<16} {:<20} {:>4}s",
                    cut(&l.token.label, 14),
                    cut(&l.token.serial, 16),
                    cut(&l.user, 16),
                    l.phase,
                    l.since.elapsed().as_secs()
                ))
            })
            .collect()
    };
    f.render_widget(
        Paragraph::new(lane_lines).block(Block::new().borders(Borders::ALL).title(" Lanes ")),
        lanes,
    );
    let count = |o: &str| m.settled.values().filter(|v| v.as_str() == o).count();
    let done = m
        .rows
        .iter()
        .filter(|u| m.settled.contains_key(&u.to_lowercase()))
        .count();
    let label = format!(
        "{done}/{} rows · {} registered · {} rejected · {} failed · {} skipped",
        m.rows.len(),
        count("registered"),
        count("rejected"),
        count("failed"),
        count("skipped")
    );
    let ratio = if m.rows.is_empty() {
        0.0
    } else {
        done as f64 / m.rows.len() as f64
    };
    f.render_widget(
        Gauge::default()
            .block(Block::new().borders(Borders::ALL).title(" Batch "))
            .gauge_style(Style::new().fg(Color::Green))
            .ratio(ratio.clamp(0.0, 1.0))
            .label(if m.rows.is_empty() {
                let n = |o: &str| m.outcomes.get(o).copied().unwrap_or(0);
                format!(
                    "no batch · {} registered · {} rejected · {} failed · {} skipped",
                    n("registered"),
                    n("rejected"),
                    n("failed"),
                    n("skipped")
                )
            } else {
                label
            }),
        batch,
    );
    let result_lines: Vec<Line<'_>> = m
        .results
        .iter()
        .map(|r| {
            let colour = match r.outcome.as_str() {
                "registered" => Color::Green,
                "skipped" => Color::Yellow,
                _ => Color::Red,
            };
            // Said only once the server answered.
            let remove = if r.code.is_some() {
                "remove the token · "
            } else {
                ""
            };
            Line::from(vec![
                Span::styled(format!("{:<10} ", r.outcome), Style::new().fg(colour)),
                Span::raw(format!(
                    "{:<14} {:<12} {remove}{}",
                    cut(&r.username, 14),
                    cut(&r.token_label, 12),
                    cut(&r.message, 60)
                )),
            ])
        })
        .collect();
    f.render_widget(
        Paragraph::new(result_lines)
            .block(Block::new().borders(Borders::ALL).title(" Last results ")),
        results,
    );
    let shown = log.height.saturating_sub(2) as usize;
    let log_lines: Vec<Line<'_>> = m
        .log
        .iter()
        .skip(m.log.len().saturating_sub(shown))
        .map(|l| Line::raw(l.clone()))
        .collect();
    f.render_widget(
        Paragraph::new(log_lines).block(Block::new().borders(Borders::ALL).title(" Log ")),
        log,
    );
    let help = if m.quitting {
        "Lanes are busy: quit anyway? y / n"
    } else if m.questions.is_empty() {
        "p pause/resume · s skip the current token · q quit"
    } else {
        "Enter answer · Esc cancel · Ctrl-C quit"
    };
    f.render_widget(
        Paragraph::new(help).style(Style::new().add_modifier(Modifier::REVERSED)),
        keys,
    );
    if let Some(q) = m.questions.front() {
        question(f, m, &q.question);
    }
}

fn question(f: &mut Frame<'_>, m: &Model, q: &Question) {
    let (title, text) = q.title_and_text();
    let area = f.area();
    let w = area.width.min(72);
    let field = if q.typed() { 2 } else { 0 };
    let h = (text.len() as u16 + 2 + field).min(area.height);
    let r = Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height.saturating_sub(h)) / 2,
        w,
        h,
    );
    let mut lines: Vec<Line<'_>> = text.into_iter().map(Line::raw).collect();
    if q.typed() {
        let shown = if q.masked() {
            "•".repeat(m.input.chars().count())
        } else {
            plain(&m.input).into_owned()
        };
        lines.push(Line::raw(""));
        lines.push(Line::from(vec![
            Span::raw("> "),
            Span::styled(shown, Style::new().add_modifier(Modifier::BOLD)),
            Span::raw("_"),
        ]));
    }
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(
            Block::new()
                .borders(Borders::ALL)
                .title(format!(" {title} "))
                .border_style(Style::new().fg(Color::Cyan)),
        ),
        r,
    );
}

/// At most `n` characters of `s`, made printable.
fn cut(s: &str, n: usize) -> String {
    let p = plain(s);
    if p.chars().count() <= n {
        p.into_owned()
    } else {
        let mut out: String = p.chars().take(n.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(label: &str) -> TokenName {
        TokenName {
            reader: "r".into(),
            label: label.into(),
            serial: "01".into(),
        }
    }

    #[test]
    fn keys_answer_questions_and_quit_asks_while_lanes_are_busy() {
        let mut m = Model::new(vec!["alice".into()], "t".into());
        let (tx, rx) = std::sync::mpsc::channel();
        m.apply(ToUi::Ask {
            id: 1,
            question: Question::User {
                token: token("a"),
                subject: "CN=A".into(),
            },
            reply: tx,
        });
        m.key(Key::Enter);
        assert!(rx.try_recv().is_err(), "an empty field is not an answer");
        for c in "bob".chars() {
            m.key(Key::Char(c));
        }
        m.key(Key::Backspace);
        m.key(Key::Char('b'));
        assert!(m.key(Key::Char('q')).is_none(), "q is typed, not quit");
        m.key(Key::Backspace);
        m.key(Key::Enter);
        match rx.try_recv().unwrap() {
            Answer::Text(t) => assert_eq!(t.as_str(), "bob"),
            _ => panic!("a text answer"),
        }
        m.apply(ToUi::Event(Box::new(Event::Seen {
            time: String::new(),
            token: token("a"),
            username: None,
            line: None,
        })));
        assert!(m.key(Key::Char('q')).is_none(), "a busy lane: asked first");
        assert!(matches!(m.key(Key::Char('y')), Some(Action::Quit)));
        assert!(matches!(
            m.key(Key::Char('s')),
            Some(Action::Control(Control::Skip(id))) if id == token("a").id()
        ));
        assert!(matches!(
            m.key(Key::Char('p')),
            Some(Action::Control(Control::Pause(true)))
        ));
    }

    #[test]
    fn it_draws_on_an_80_by_24_terminal() {
        let mut m = Model::new(
            vec!["alice".into(), "bob".into()],
            "helpdesk @ https://cg".into(),
        );
        m.apply(ToUi::Event(Box::new(Event::WaitingPin {
            time: String::new(),
            token: token("alice\u{1b}[31m"),
            username: "alice".into(),
        })));
        let backend = ratatui::backend::TestBackend::new(80, 24);
        let mut t = ratatui::Terminal::new(backend).unwrap();
        t.draw(|f| draw(f, &m)).unwrap();
        let screen: String = t
            .backend()
            .buffer()
            .content()
            .iter()
            .map(|c| c.symbol().to_string())
            .collect();
        assert!(screen.contains("waiting for the PIN"), "{screen}");
        assert!(screen.contains("0/2 rows"), "{screen}");
        assert!(!screen.contains('\u{1b}'), "escapes are not drawn raw");
    }
}
