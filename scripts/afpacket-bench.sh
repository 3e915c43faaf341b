#!/bin/sh
# The README's AF_PACKET figures, in one run: pkt_gen on the netmap-rs
# AF_PACKET backend and a plain send()/recv() loop on ordinary AF_PACKET
# sockets (examples/afpacket_baseline.rs), each way over a veth pair in a
# private network namespace (no other interface sees the traffic), REPS
# times each, interleaved; prints every run and the medians. Needs root.
#   sudo sh afpacket-bench.sh            # 60-byte frames, 5 s runs, 3 reps
#   sudo LEN=1514 sh afpacket-bench.sh
set -e
cargo build --release --examples -q
NS=nmrs-bench-$$
ip netns add "$NS"
trap 'ip netns del "$NS"; rm -f /tmp/nmrs-bench.$$.*' EXIT
ip netns exec "$NS" sh -c 'echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6' 2>/dev/null || true
ip -n "$NS" link add va type veth peer name vb
ip -n "$NS" link set va up
ip -n "$NS" link set vb up
X="ip netns exec $NS target/release/examples"
SECS=${SECS:-5} LEN=${LEN:-60} REPS=${REPS:-3}
OUT=/tmp/nmrs-bench.$$.runs
# run WHO DIR RX-COMMAND TX-COMMAND FIELD: both ends, the receiver started
# first; FIELD is the awk field of packets/s in each one's last line.
run() {
    $3 -f rx -l "$LEN" > /tmp/nmrs-bench.$$.rx &
    sleep 0.5
    tx=$($4 -f tx -l "$LEN" | tail -n 1)
    wait
    rx=$(tail -n 1 /tmp/nmrs-bench.$$.rx)
    printf "%-9s %s | %s\n%-9s %s | %s\n" "$1" "$2" "$tx" "$1" "$2" "$rx"
    echo "$1 $2 $(echo "$tx" | awk "{print \$($5)}") $(echo "$rx" | awk "{print \$($5)}")" >> $OUT
}
for rep in $(seq "$REPS"); do
    for d in "va vb" "vb va"; do
        set -- $d
        # pkt_gen's last line is C's `Speed: N pps ...` (-N: no units).
        run netmap-rs "$1->$2" "$X/pkt_gen -i afpacket:$2 --busy -N --duration $((SECS + 2))" \
            "$X/pkt_gen -i afpacket:$1 -N --duration $SECS" 2
        run plain "$1->$2" "$X/afpacket_baseline -i $2 -T $((SECS + 2))" \
            "$X/afpacket_baseline -i $1 -T $SECS" NF-3
    done
done
median() { sort -n | awk '{ v[NR]=$1 } END { print v[int((NR+1)/2)] }'; }
echo
echo "medians of $REPS runs, $LEN-byte frames, $SECS s each (packets/s):"
for d in "va->vb" "vb->va"; do
    for who in netmap-rs plain; do
        tx=$(grep "^$who $d " $OUT | awk '{print $3}' | median)
        rx=$(grep "^$who $d " $OUT | awk '{print $4}' | median)
        eval "${who%-rs}_tx=$tx ${who%-rs}_rx=$rx"
        printf "  %-9s %s  tx %8s  rx %8s\n" "$who" "$d" "$tx" "$rx"
    done
    echo "  ratio     $d  tx $(echo "$netmap_tx $plain_tx" | awk '{printf "%.2f", $1/$2}')      rx $(echo "$netmap_rx $plain_rx" | awk '{printf "%.2f", $1/$2}')"
done
