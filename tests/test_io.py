import pytest

from tinykws.io import atomic_write, write_json


def test_failed_write_leaves_the_old_file_untouched(tmp_path):
    path = tmp_path / "a.json"
    write_json(path, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_write(path, "w") as f:
            f.write("{half")
            raise RuntimeError("interrupted")
    assert path.read_text().strip().startswith("{") and '"v": 1' in path.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_written_files_get_the_usual_permissions(tmp_path):
    import os

    path = tmp_path / "b.txt"
    with atomic_write(path, "w") as f:
        f.write("x")
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask
