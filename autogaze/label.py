"""Greedy gaze labels for NTP: ``python -m autogaze.label --help`` (implementation: autogaze/labeling/)."""
from autogaze.labeling.cli import main

if __name__ == "__main__":
    main()
