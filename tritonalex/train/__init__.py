"""`tritonalex train` and `tritonalex eval`: the paper's recipe (trainer.py), evaluation with
the 10-crop test (evaluate.py), atomic checkpoints (checkpoint.py), the commands (command.py)."""
