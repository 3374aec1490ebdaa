"""Stage 1, data preparation: `python dataset/prepare.py --help`."""
