#!/bin/sh
# Stand-in for the kata agent, run as `/bin/sh agent.sh [normal|stubborn]`:
# records how it was started next to its socket, then waits. A stubborn one
# ignores SIGTERM, so only SIGKILL stops it.
echo "agent $$" >>"$STANDIN_PIDS"
dir=${KATA_AGENT_SOCKET%/*}
{
    echo "argv $*"
    echo "socket $KATA_AGENT_SOCKET"
    echo "netns $(readlink /proc/$$/ns/net)"
} >"$dir/agent.record.tmp" && mv "$dir/agent.record.tmp" "$dir/agent.record"
[ "$1" = stubborn ] && trap '' TERM
exec sleep 1000
