# The agent's user unit on for every user's graphical session, as Fedora's %systemd_user_post
# does (the XDG autostart entry stands aside under systemd); the relay stays off until configured.
systemctl --global enable tokenroll-agent.service >/dev/null 2>&1 || :
if [ -d /run/systemd/system ]; then systemctl daemon-reload >/dev/null 2>&1 || :; fi
