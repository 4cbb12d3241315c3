# On the last removal ($1 = 0, not an upgrade): the relay stopped, the agent's unit disabled.
if [ "$1" -eq 0 ]; then
  systemctl --global disable tokenroll-agent.service >/dev/null 2>&1 || :
  if [ -d /run/systemd/system ]; then systemctl --no-reload disable --now tokenroll-relay.service >/dev/null 2>&1 || :; fi
fi
