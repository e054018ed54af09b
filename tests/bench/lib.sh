# Shell helpers shared by the benchmark areas; sourced, not run.

# bench_medians FILE: FILE has lines "<row> <conc> <figure>..." with one
# line per row, concurrency and round. Prints "<row> <conc> <median>..." once
# per row and concurrency, each figure the median over the rounds.
bench_medians() {
    awk '
    { k = $1 " " $2; n[k]++; if (NF > nf) nf = NF; for (f = 3; f <= NF; f++) v[k, f, n[k]] = $f }
    END {
        for (k in n) {
            line = k
            for (f = 3; f <= nf; f++) {
                m = n[k]
                for (i = 1; i <= m; i++) a[i] = v[k, f, i]
                for (i = 2; i <= m; i++)
                    for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
                line = line " " ((m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2)
            }
            print line
        }
    }' "$1"
}
