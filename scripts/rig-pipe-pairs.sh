#!/bin/sh
# The README's "pkt_gen against C pkt-gen" table: a guest script for the
# netmap test rig (../shared/rig/), which boots a kernel with the netmap
# module and puts C pkt-gen and this crate's release examples in /share:
#
#   ../shared/rig/run.sh scripts/rig-pipe-pairs.sh 2 > pairs.txt
#
# Four pairs through kernel pipes, interleaved, ROUNDS rounds (default 9),
# N packets each (default 2000000), receiver pinned to CPU 1 and sender to
# CPU 0; prints each receiver's `Speed:` line, then the medians.
export PATH=/share:/bin:/sbin
cd /share
N=${N:-2000000}
ROUNDS=${ROUNDS:-9}
pair() { # label, rx command, tx command
  sh -c "$2" > /tmp/rx.log 2>&1 & p=$!; sleep 0.5
  sh -c "$3" > /tmp/tx.log 2>&1 & q=$!
  ( sleep 30; kill $p 2>/dev/null ) & w=$!
  wait $p; kill $q 2>/dev/null; wait $q 2>/dev/null; kill $w 2>/dev/null
  printf '%-14s %s\n' "$1" "$(grep -E 'Speed' /tmp/rx.log | head -1)" | tee -a /tmp/speeds
}
C=./pkt-gen-c; R=t/examples/pkt_gen
: > /tmp/speeds
i=1
while [ $i -le $ROUNDS ]; do
  echo "== round $i"
  pair "C->C"         "$C -i netmap:pipe}a$i -f rx -n $N -a 1" "$C -i netmap:pipe{a$i -f tx -n $N -a 0"
  pair "crate->crate" "$R -i netmap:pipe}b$i -f rx -n $N -a 1" "$R -i netmap:pipe{b$i -f tx -n $N -a 0"
  pair "C->crate"     "$R -i netmap:pipe}c$i -f rx -n $N -a 1" "$C -i netmap:pipe{c$i -f tx -n $N -a 0"
  pair "crate->C"     "$C -i netmap:pipe}d$i -f rx -n $N -a 1" "$R -i netmap:pipe{d$i -f tx -n $N -a 0"
  i=$((i + 1))
done
echo "== medians (Mpps, receiver's count)"
for k in "C->C" "crate->C" "crate->crate" "C->crate"; do
  grep "^$k " /tmp/speeds | awk '{v=$3; if ($4 == "Kpps") v /= 1000; print v}' | sort -n |
    awk -v k="$k" '{a[NR]=$1} END {if (NR) printf "%-14s %.3f\n", k, a[int((NR+1)/2)]}'
done
