# After the last removal ($1 = 0): the relay's state, which systemd made for its dynamic user.
if [ "$1" -eq 0 ]; then
  rm -rf /var/lib/private/tokenroll-relay /var/lib/tokenroll-relay
fi
