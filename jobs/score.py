"""Ray job entrypoint: `methray score`.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/score.py --config my_run.yaml [--set section.key=value ...]
"""

from _entry import run

if __name__ == "__main__":
    run("score")
