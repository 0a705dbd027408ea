"""Training callbacks: periodic evaluation keeping the best policy, early stops, CSV columns that appear later."""

from __future__ import annotations

from trpo_tf.monitor import CSVLogger


# --------------------------------------------------------------------------- logging the new keys

def test_csv_logger_adds_columns_for_keys_that_appear_later(tmp_path):
    path = str(tmp_path / "progress.csv")
    entries = [{"iteration": 1, "kl": 0.5}, {"iteration": 2, "kl": 0.25, "eval_return_mean": -3.5},
               {"iteration": 3, "kl": 0.125}, {"iteration": 4, "kl": 0.0625, "eval_return_mean": -1.5, "extra": 7}]
    logger = CSVLogger(path)
    for entry in entries:
        logger(entry)
    logger.close()
    with open(path, newline="", encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    assert lines == ["iteration,kl,eval_return_mean,extra", "1,0.5,,", "2,0.25,-3.5,", "3,0.125,,",
                     "4,0.0625,-1.5,7"]
    # Resuming writes the history first: its header covers keys of every entry, not only the first.
    logger = CSVLogger(path, entries[:2])
    logger({"iteration": 3, "kl": 0.125})
    logger.close()
    with open(path, newline="", encoding="utf-8") as handle:
        assert handle.read().splitlines() == ["iteration,kl,eval_return_mean", "1,0.5,", "2,0.25,-3.5", "3,0.125,"]
