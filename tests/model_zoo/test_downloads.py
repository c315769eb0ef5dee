"""Downloads on first use, through a loopback server standing in for the publishers (never the internet).

``KILN_ZOO_MIRROR`` points every published URL at the server; the suite's ``KILN_OFFLINE=1`` is lifted
only here.
"""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
import torchvision
from loopback import Loopback
from zoo_publishers import as_caffe2, randomize_bn, write_pickle

from kiln.cli import main
from kiln.model_zoo import DownloadError, cached_download, resolve_url

PAYLOAD = b"weights!" * 50_000  # 400 kB: several read chunks
SHA = hashlib.sha256(PAYLOAD).hexdigest()
URL = f"https://download.pytorch.org/models/fake-{SHA[:8]}.pth"
PATH = f"/models/fake-{SHA[:8]}.pth"


@pytest.fixture
def online(tmp_path, monkeypatch):
    monkeypatch.delenv("KILN_OFFLINE", raising=False)
    monkeypatch.setenv("KILN_HOME", str(tmp_path / "kiln_home"))
    return tmp_path / "kiln_home" / "checkpoints"


def _serve(monkeypatch, files, **kw) -> Loopback:
    server = Loopback(files, **kw)
    monkeypatch.setenv("KILN_ZOO_MIRROR", server.url)
    return server


def test_download_verifies_the_hash_in_the_file_name_and_caches_atomically(online, monkeypatch, capsys):
    with _serve(monkeypatch, {PATH: PAYLOAD}) as server:
        path = cached_download(URL, progress=True)
    assert path == online / f"fake-{SHA[:8]}.pth" and path.read_bytes() == PAYLOAD
    assert [p.name for p in online.glob("fake-*")] == [path.name]  # no .part left
    assert server.requests == [(PATH, None)]
    assert "Downloading fake-" in capsys.readouterr().err


def test_cache_hit_needs_no_network(online, monkeypatch):
    with _serve(monkeypatch, {PATH: PAYLOAD}):
        first = cached_download(URL)
    monkeypatch.setenv("KILN_OFFLINE", "1")
    monkeypatch.setenv("KILN_ZOO_MIRROR", "http://127.0.0.1:9")  # nothing listens there
    assert cached_download(URL) == first


def test_http_404_names_the_url_and_where_to_put_the_file(online, monkeypatch):
    with _serve(monkeypatch, {}), pytest.raises(DownloadError) as err:
        cached_download(URL)
    msg = str(err.value)
    assert "HTTP 404" in msg and URL in msg and str(online / f"fake-{SHA[:8]}.pth") in msg
    assert not any(online.glob("fake-*.pth*"))


def test_checksum_mismatch_deletes_the_download_and_says_so(online, monkeypatch):
    with _serve(monkeypatch, {PATH: PAYLOAD[:-1] + b"?"}), pytest.raises(DownloadError) as err:
        cached_download(URL)
    assert "checksum mismatch" in str(err.value) and "deleted" in str(err.value)
    assert not any(online.glob("fake-*.pth*"))


def test_interrupted_download_is_resumed_with_a_range_request(online, monkeypatch):
    with _serve(monkeypatch, {PATH: PAYLOAD}, truncate_once={PATH}) as server:
        with pytest.raises(DownloadError, match="resumes"):
            cached_download(URL)
        dest = online / f"fake-{SHA[:8]}.pth"
        assert not dest.exists()  # nothing half-written where the checkpoint goes
        assert (online / (dest.name + ".part")).stat().st_size == len(PAYLOAD) // 2
        assert cached_download(URL).read_bytes() == PAYLOAD
    assert server.requests == [(PATH, None), (PATH, f"bytes={len(PAYLOAD) // 2}-")]


def test_offline_without_cache_is_a_clear_error(online, monkeypatch):
    monkeypatch.setenv("KILN_OFFLINE", "1")
    with pytest.raises(DownloadError, match=r"KILN_OFFLINE.*download.pytorch.org/models/fake"):
        cached_download(URL)


def test_scheme_names_resolve_to_the_publishers_urls():
    assert resolve_url("torchvision://resnet50") == "https://download.pytorch.org/models/resnet50-0676ba61.pth"
    assert resolve_url("modelzoo://resnet50") == resolve_url("torchvision://resnet50")
    assert resolve_url("detectron2://ImageNetPretrained/MSRA/R-50.pkl") == (
        "https://dl.fbaipublicfiles.com/detectron2/ImageNetPretrained/MSRA/R-50.pkl")
    assert resolve_url("catalog://ImageNetPretrained/MSRA/R-50") == resolve_url(
        "detectron2://ImageNetPretrained/MSRA/R-50.pkl")
    assert resolve_url("open-mmlab://detectron2/resnet50_caffe").endswith("resnet50_msra-5891d200.pth")
    with pytest.raises(DownloadError, match="resnext101_32x4d"):
        resolve_url("open-mmlab://resnext101_32x4")


def test_detectron2_imagenet_pkl_downloads_and_loads_as_pretrained(online, monkeypatch, tmp_path):
    """MODEL.WEIGHTS-style name -> download -> Caffe2 blobs -> kiln ResNet with the publisher's outputs."""
    from kiln.models.backbones import ResNet

    torch.manual_seed(0)
    tv = torchvision.models.resnet18(weights=None)
    randomize_bn(tv)
    tv.eval()
    src = tmp_path / "R-18.pkl"
    write_pickle(as_caffe2(tv.state_dict()), str(src))
    with _serve(monkeypatch, {"/detectron2/ImageNetPretrained/MSRA/R-18.pkl": src.read_bytes()}):
        model = ResNet(depth=18, out_indices=(3,), pretrained="detectron2://ImageNetPretrained/MSRA/R-18.pkl")
        model.init_weights()
    assert (online / "detectron2" / "ImageNetPretrained" / "MSRA" / "R-18.pkl").is_file()
    model.eval()
    x = torch.randn(1, 3, 64, 64)
    expected = tv.layer4(tv.layer3(tv.layer2(tv.layer1(tv.maxpool(tv.relu(tv.bn1(tv.conv1(x))))))))
    torch.testing.assert_close(model(x)[-1], expected, atol=1e-4, rtol=1e-4)


def test_private_zoo_json_entry_downloads_through_the_same_path(online, monkeypatch, capsys):
    online.parent.mkdir(parents=True)
    (online.parent / "zoo.json").write_text(json.dumps({"team/detector": {
        "config": "kiln::shapes/retinanet_r18_fpn_shapes.py",
        "url": "https://models.example.com/team/detector.pth", "sha256": SHA}}))
    with _serve(monkeypatch, {"/team/detector.pth": PAYLOAD}):
        assert main(["zoo", "get", "team/detector"]) == 0
    out = capsys.readouterr().out
    assert f"checkpoint: {online / 'detector.pth'}" in out
    assert (online / "detector.pth").read_bytes() == PAYLOAD


def test_zoo_download_of_an_unreachable_entry_fails_naming_the_url(online, monkeypatch, capsys):
    with _serve(monkeypatch, {}):
        assert main(["zoo", "download", "COCO-Detection/retinanet_R_50_FPN_1x"]) == 2
    err = capsys.readouterr().err
    assert "https://dl.fbaipublicfiles.com/detectron2/COCO-Detection/retinanet_R_50_FPN_1x/190397773/" \
           "model_final_bfca0b.pkl" in err and "HTTP 404" in err
