"""Ray job entrypoint: `methray prepare`.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/prepare.py --config my_run.yaml [--set section.key=value ...]
"""

from _entry import run

if __name__ == "__main__":
    run("prepare")
