"""``python -m steps <entry point> [arguments]``: how MLproject starts every entry point.

``python -m steps train --train_uri ...`` runs ``steps/train.py``; ``python -m steps main`` runs
``main.py``. How the process starts (in the pipeline's warm process or on its own) is the
runtime layer's business (steps/runtime/launch.py), not the step's.
"""

from steps.runtime.launch import main

if __name__ == "__main__":
    main()
