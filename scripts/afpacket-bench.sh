#!/bin/sh
# The README's AF_PACKET and AF_XDP figures, in one run, each way over a veth
# pair in a private network namespace (no other interface sees the traffic),
# REPS times each, interleaved; prints every run and the medians. Needs root.
#
# Pairs (receiver started first on CPU 1, sender on CPU 0; both report):
#   netmap-rs      pkt_gen on the netmap-rs AF_PACKET backend (afpacket:IF)
#   plain          a send()/recv() loop on ordinary AF_PACKET sockets
#                  (examples/afpacket_baseline.rs)
#   netmap-rs-xdp  pkt_gen on the netmap-rs AF_XDP backend (afxdp:IF)
#   c-afxdp        scripts/afxdp_ref.c, plain libxdp xsk sockets
# Sending only: the peer drops everything in an XDP program (afxdp_ref -f
# drop, skb mode) and the sender's own packets/s is the figure, for
# pkt_gen on afxdp: and on afpacket:, afpacket_baseline and afxdp_ref tx.
#
# afxdp_ref.c is built with gcc against libxdp and libbpf (apt-get install
# libxdp-dev libbpf-dev); without them its rows and the sending-only section
# are skipped. A row whose program fails or prints no rate is shown as
# failed and left out of the medians.
#   sudo sh scripts/afpacket-bench.sh            # 60-byte frames, 5 s runs, 3 reps
#   sudo LEN=1514 sh scripts/afpacket-bench.sh
#   sudo SECS=3 REPS=1 sh scripts/afpacket-bench.sh
set -e
cd "$(dirname "$0")/.."
cargo build --release --examples -q
T=/tmp/nmrs-bench.$$
NS=nmrs-bench-$$
REF=$T.afxdp_ref
trap 'rm -f $T.*' EXIT
if gcc -O2 -Wall -Wextra -o "$REF" scripts/afxdp_ref.c -lxdp -lbpf 2> $T.cc; then
    :
else
    echo "scripts/afxdp_ref.c does not build (needs gcc and: apt-get install libxdp-dev libbpf-dev);"
    echo "skipping the c-afxdp rows and the sending-only section:"
    head -n 3 $T.cc | sed 's/^/  /'
    REF=
fi
ip netns add "$NS"
trap 'ip netns del "$NS"; rm -f $T.*' EXIT
ip netns exec "$NS" sh -c 'echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6' 2>/dev/null || true
ip -n "$NS" link add va type veth peer name vb
ip -n "$NS" link set va up
ip -n "$NS" link set vb up
B=target/release/examples
SECS=${SECS:-5} LEN=${LEN:-60} REPS=${REPS:-3}
# Receiver (or dropping peer) on CPU 1, sender on CPU 0, where there are two.
if [ "$(nproc)" -ge 2 ]; then
    RX="ip netns exec $NS taskset -c 1" TX="ip netns exec $NS taskset -c 0"
else
    RX="ip netns exec $NS" TX="ip netns exec $NS"
fi

# report WHO DIR SIDE FIELD: prints SIDE's last line (SIDE is $T.tx or
# $T.rx, its stderr in SIDE.err, its exit status in SIDE.rc) and sets v to
# the packets/s in awk field FIELD of it; or says why it failed (the first
# error line the program printed), v empty.
report() {
    v=$(tail -n 1 "$3" | awk "{print \$($4)}" 2>/dev/null)
    case $v in *[!0-9.]*) v= ;; esac
    if [ "$(cat "$3.rc")" = 0 ] && [ -n "$v" ]; then
        printf "%-13s %s | %s\n" "$1" "$2" "$(tail -n 1 "$3")"
    else
        v= why=$(grep -E '^(pkt_gen|afpacket_baseline|afxdp_ref):' "$3.err" | tail -n 1)
        [ -n "$why" ] || why=$(tail -n 1 "$3.err")
        printf "%-13s %s | failed (exit %s): %s\n" "$1" "$2" "$(cat "$3.rc")" "$why"
    fi
}

# unattach: detaches any XDP program a failed run left on the pair (libxdp
# attaches through netlink, which outlives a process that dies before its
# cleanup), so that one failure does not fail every run after it.
unattach() {
    for dev in va vb; do
        ip -n "$NS" link set dev $dev xdp off 2>/dev/null || true
    done
}

# run WHO DIR RX-COMMAND TX-COMMAND FIELD: both ends, the receiver started
# first; FIELD is the awk field of packets/s in each one's last line.
run() {
    # A closed AF_XDP socket frees its queue a little after it exits.
    sleep 1
    ( if $RX $3 -f rx -l "$LEN" > $T.rx 2> $T.rx.err; then rc=0; else rc=$?; fi
      echo $rc > $T.rx.rc ) &
    sleep 0.5
    if $TX $4 -f tx -l "$LEN" > $T.tx 2> $T.tx.err; then rc=0; else rc=$?; fi
    echo $rc > $T.tx.rc
    wait
    unattach
    report "$1" "$2" $T.tx "$5"
    tx=$v
    report "$1" "$2" $T.rx "$5"
    [ -n "$tx" ] && [ -n "$v" ] && echo "$1 $2 $tx $v" >> $T.runs
    return 0
}

# send WHO FROM TO TX-COMMAND FIELD: the sender alone on FROM while TO drops
# everything in XDP; the sender's packets/s is in awk field FIELD.
send() {
    sleep 1
    $RX "$REF" -i "$3" -f drop -T $((SECS + 10)) 2> $T.drop.err &
    drop=$!
    sleep 0.5
    if ! kill -0 $drop 2>/dev/null; then
        printf "%-13s %s | failed: peer: %s\n" "$1" "$2->$3" "$(grep -m 1 afxdp_ref: $T.drop.err)"
        return 0
    fi
    if $TX $4 -f tx -l "$LEN" > $T.tx 2> $T.tx.err; then rc=0; else rc=$?; fi
    echo $rc > $T.tx.rc
    kill -TERM $drop 2>/dev/null || true
    wait $drop || true
    unattach
    report "$1" "$2->$3" $T.tx "$5"
    [ -n "$v" ] && echo "$1 $2->$3 $v" >> $T.sends
    return 0
}

: > $T.runs
: > $T.sends
for rep in $(seq "$REPS"); do
    for d in "va vb" "vb va"; do
        set -- $d
        # pkt_gen's and afxdp_ref's last line is C's `Speed: N pps ...` (-N:
        # no units).
        run netmap-rs "$1->$2" "$B/pkt_gen -i afpacket:$2 --busy -N --duration $((SECS + 2))" \
            "$B/pkt_gen -i afpacket:$1 -N --duration $SECS" 2
        run plain "$1->$2" "$B/afpacket_baseline -i $2 -T $((SECS + 2))" \
            "$B/afpacket_baseline -i $1 -T $SECS" NF-3
        run netmap-rs-xdp "$1->$2" "$B/pkt_gen -i afxdp:$2 --busy -N --duration $((SECS + 2))" \
            "$B/pkt_gen -i afxdp:$1 -N --duration $SECS" 2
        if [ -n "$REF" ]; then
            run c-afxdp "$1->$2" "$REF -i $2 -N -T $((SECS + 2))" "$REF -i $1 -N -T $SECS" 2
        fi
    done
done
if [ -n "$REF" ]; then
    echo
    echo "sending only (the peer drops everything: afxdp_ref -f drop, XDP_DROP in skb mode):"
    for rep in $(seq "$REPS"); do
        for d in "va vb" "vb va"; do
            set -- $d
            send netmap-rs-xdp "$1" "$2" "$B/pkt_gen -i afxdp:$1 -N --duration $SECS" 2
            send netmap-rs "$1" "$2" "$B/pkt_gen -i afpacket:$1 -N --duration $SECS" 2
            send plain "$1" "$2" "$B/afpacket_baseline -i $1 -T $SECS" NF-3
            send c-afxdp "$1" "$2" "$REF -i $1 -N -T $SECS" 2
        done
    done
fi

median() { sort -n | awk '{ v[NR]=$1 } END { if (NR) print v[int((NR+1)/2)]; else print "-" }'; }
ratio() { echo "$1 $2" | awk '{ if ($1 == "-" || $2 == "-" || $2 == 0) print "-"; else printf "%.2f", $1/$2 }'; }
# med FILE WHO DIR FIELD: the median of FIELD over WHO's runs in direction DIR.
med() { grep "^$2 $3 " "$1" | awk "{print \$$4}" | median; }

echo
echo "medians of $REPS runs, $LEN-byte frames, $SECS s each (packets/s; - where no run succeeded):"
echo "pairs:"
for d in "va->vb" "vb->va"; do
    for who in netmap-rs plain netmap-rs-xdp c-afxdp; do
        printf "  %-13s %s  tx %8s  rx %8s\n" "$who" "$d" "$(med $T.runs $who $d 3)" "$(med $T.runs $who $d 4)"
    done
    # ratio line: LABEL A B, A's median over B's for tx and rx.
    for r in "netmap-rs/plain netmap-rs plain" \
             "afxdp/c-afxdp netmap-rs-xdp c-afxdp" \
             "afxdp/afpacket netmap-rs-xdp netmap-rs"; do
        set -- $r
        printf "  %-19s %s  tx %6s    rx %6s\n" "$1" "$d" \
            "$(ratio "$(med $T.runs "$2" $d 3)" "$(med $T.runs "$3" $d 3)")" \
            "$(ratio "$(med $T.runs "$2" $d 4)" "$(med $T.runs "$3" $d 4)")"
    done
done
if [ -n "$REF" ]; then
    echo "sending only, into XDP_DROP:"
    for d in "va->vb" "vb->va"; do
        for who in netmap-rs-xdp netmap-rs plain c-afxdp; do
            printf "  %-13s %s  tx %8s\n" "$who" "$d" "$(med $T.sends $who $d 3)"
        done
        printf "  %-19s %s  tx %6s\n" afxdp/afpacket "$d" \
            "$(ratio "$(med $T.sends netmap-rs-xdp $d 3)" "$(med $T.sends netmap-rs $d 3)")"
    done
fi
