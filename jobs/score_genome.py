"""Ray job entrypoint: `methray score-genome` (genome-wide scoring of a tissue set).

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/score_genome.py --config tissue_set.yaml --date "$(date -u +%F)"

The date keys the output prefix (<out_dir>/<run_name>/<date>/): rerunning the same date
finishes only the missing shards, and a complete date is reported, not redone.
"""

from _entry import run

if __name__ == "__main__":
    run("score-genome")
