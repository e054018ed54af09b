#!/usr/bin/env bash
# Runs a command in private mount and network namespaces with their own
# /run/netns and /run/peerpod, so that several test runs on one machine do not
# see each other's namespaces, sockets or pod directories.
exec unshare --mount --net --propagation private -- bash -c '
mkdir -p /run/netns /run/peerpod
mount -t tmpfs tmpfs /run/netns && mount -t tmpfs tmpfs /run/peerpod && ip link set lo up && exec "$@"' isolated "$@"
