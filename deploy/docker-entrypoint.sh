#!/bin/sh
# Entrypoint of the monitor image: runs "$@" (by default `monitor run …`) as the unprivileged
# user $MONITOR_USER (default: monitor).
#
# Started as a non-root user (the image's default USER): runs the command as is.
# Started as root (`docker run --user 0 --cap-add SYS_ADMIN …`, for netns vantages): drops to
# $MONITOR_USER, keeping CAP_SYS_ADMIN — and nothing else — as an ambient capability when the
# container was given it, since entering a network namespace (setns) needs it; a plain user
# would otherwise lose every capability on exec. Without it, all capabilities are dropped.
set -eu
user="${MONITOR_USER:-monitor}"
if [ "$(id -u)" != 0 ]; then
  exec "$@"
fi
# CAP_SYS_ADMIN is capability 21: is it in this container's bounding set?
bounding=$(awk '/^CapBnd:/ {print $2}' /proc/self/status)
if [ $(( (0x$bounding >> 21) & 1 )) -eq 1 ]; then
  exec setpriv --reuid="$user" --regid="$(id -g "$user")" --init-groups \
    --inh-caps=-all,+sys_admin --ambient-caps=-all,+sys_admin --bounding-set=-all,+sys_admin -- "$@"
fi
exec setpriv --reuid="$user" --regid="$(id -g "$user")" --init-groups --inh-caps=-all --bounding-set=-all -- "$@"
