# On the first install ($1 = 1) the agent's user unit is turned on for every user's graphical
# session (the XDG autostart entry stands aside under systemd); an upgrade ($1 >= 2) keeps the
# administrator's choice and restarts a relay that runs. The relay is never enabled here.
if [ "$1" -eq 1 ]; then
  systemctl --global enable tokenroll-agent.service >/dev/null 2>&1 || :
fi
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || :
  if [ "$1" -ge 2 ]; then systemctl try-restart tokenroll-relay.service >/dev/null 2>&1 || :; fi
fi
