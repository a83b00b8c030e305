"""Pieces of ``python -m autogaze.evaluate`` (the entry module): which gaze models to score
(:mod:`.models`), and the CSV / plot / table it writes (:mod:`.report`)."""
