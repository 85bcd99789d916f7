# Clustered bar chart of tools/bench/run.sh results: total time (pull + run to output) per image and
# form, medians, value on each bar.  gnuplot -e "datafile='X.dat'; outfile='X.png'; title='...'" chart.gp
set terminal pngcairo size 1000,560 font ",10" noenhanced
set output outfile
set title title
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set datafile missing "-"
set key top right
set ylabel "seconds (median)"
set yrange [0:*]
set offsets 0, 0, graph 0.08, 0
set grid ytics
array T[7] = ["legacy (overlayfs)", "eStargz, Go reference", "eStargz, stargzd", \
              "optimized, Go reference", "optimized, stargzd", "eStargz + profile, stargzd", "physical limit"]
# series i (2..8) of 7 with gap 1 sits at x = row + (i - 5) / 8
plot for [i=2:8] datafile using i:xtic(1) title T[i-1], \
     for [i=2:8] datafile using ($0 + (i - 5) / 8.0):i:(sprintf("%.2f", column(i))) with labels offset 0,0.7 font ",8" notitle
