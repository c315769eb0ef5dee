"""setup_logger: console on rank 0, a log file per rank, idempotent re-setup; rate-limited helpers."""

import logging

import pytest

from kiln.utils import log_every_n, log_first_n, setup_logger


@pytest.fixture
def fresh_name(request):
    name = f"kiln_test_{request.node.name}"
    yield name
    logger = logging.getLogger(name)
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()


def test_rank0_writes_console_and_log_txt_in_output_dir(tmp_path, capsys, fresh_name):
    logger = setup_logger(str(tmp_path), rank=0, name=fresh_name, color=False)
    logger.info("hello %d", 1)
    assert "hello 1" in capsys.readouterr().out
    text = (tmp_path / "log.txt").read_text()
    assert f"{fresh_name} INFO]: hello 1" in text


def test_other_ranks_write_only_their_own_file(tmp_path, capsys, fresh_name):
    logger = setup_logger(str(tmp_path / "run.log"), rank=3, name=fresh_name)
    logger.warning("from rank 3")
    assert capsys.readouterr().out == ""
    assert "from rank 3" in (tmp_path / "run.log.rank3").read_text()
    assert not (tmp_path / "run.log").exists()


def test_repeated_setup_replaces_handlers_instead_of_duplicating(tmp_path, capsys, fresh_name):
    setup_logger(str(tmp_path / "a"), name=fresh_name, color=False)
    logger = setup_logger(str(tmp_path / "b"), name=fresh_name, color=False)
    logger.info("once")
    assert capsys.readouterr().out.count("once") == 1
    assert "once" not in (tmp_path / "a" / "log.txt").read_text()
    assert "once" in (tmp_path / "b" / "log.txt").read_text()


def test_unknown_level_is_rejected_with_the_choices(fresh_name):
    with pytest.raises(ValueError, match="unknown log level 'LOUD'.*DEBUG, INFO"):
        setup_logger(name=fresh_name, level="LOUD")


def test_log_first_n_and_every_n_limit_repeats(caplog):
    with caplog.at_level(logging.INFO, logger="kiln"):
        for i in range(5):
            log_first_n(logging.INFO, f"first {i}", n=2)
            log_every_n(logging.INFO, f"every {i}", n=2)
    msgs = [r.getMessage() for r in caplog.records]
    assert [m for m in msgs if m.startswith("first")] == ["first 0", "first 1"]
    assert [m for m in msgs if m.startswith("every")] == ["every 0", "every 2", "every 4"]


def test_records_still_reach_root_handlers_after_setup(tmp_path, caplog, fresh_name):
    setup_logger(str(tmp_path), name=fresh_name, color=False)
    with caplog.at_level(logging.INFO):
        logging.getLogger(f"{fresh_name}.child").info("seen by root")
    assert "seen by root" in caplog.text
