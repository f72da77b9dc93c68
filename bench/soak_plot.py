"""Draws bench/soak.sh's samples: RSS and open fds of Weir's processes over the soak.

    python3 soak_plot.py soak.csv soak.png
"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first

rows = list(csv.DictReader(open(sys.argv[1])))
t = [int(r["seconds"]) for r in rows]
rss = [int(r["rss_kb"]) / 1024 for r in rows]
fds = [int(r["fds"]) for r in rows]

fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(10, 6))
top.plot(t, rss, color="tab:blue")
top.set_ylabel("RSS, all processes (MiB)")
bottom.plot(t, fds, color="tab:orange")
bottom.set_ylabel("open fds, all processes")
bottom.set_xlabel("seconds")
# Shade the load phase so baseline and cooldown stand out.
load = [int(r["seconds"]) for r in rows if r["phase"] == "load"]
if load:
    for ax in (top, bottom):
        ax.axvspan(min(load), max(load), color="grey", alpha=0.15, label="load")
top.legend(loc="upper right")
fig.suptitle("Weir soak: kill -9 of workers, origin faults, an apply every second")
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=100)
