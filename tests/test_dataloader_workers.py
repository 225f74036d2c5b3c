"""A DataLoader with forked workers (num_workers > 0) during a recorded run: nothing is
recorded twice, a log call in a worker is not recorded (and says so once), and nothing
deadlocks, also while the flusher and checkpoint writer threads are busy at fork time."""

from __future__ import annotations

import subprocess
import sys

import florgit as flor

SCRIPT = """\
import torch
import florgit as flor
from torch.utils.data import DataLoader, Dataset


class Squares(Dataset):
    def __len__(self):
        return 64

    def __getitem__(self, i):
        flor.log("in_worker", i)  # a worker is a forked child: not recorded
        return torch.tensor([float(i)]), torch.tensor([float(i * i)])


model = torch.nn.Linear(1, 1)
opt = torch.optim.SGD(model.parameters(), lr=1e-4)
with flor.checkpointing(model=model, optimizer=opt):
    for epoch in flor.loop("epoch", range(3)):
        loader = DataLoader(Squares(), batch_size=8, num_workers=2, shuffle=False)
        for step, (x, y) in flor.loop("step", enumerate(loader)):
            loss = ((model(x) - y) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss.item())
"""


def test_forked_dataloader_workers_record_nothing_twice(repo, monkeypatch):
    monkeypatch.setenv("FLORGIT_CHECKPOINT_PERIOD", "1")
    repo.write("train.py", SCRIPT)
    repo.commit("train")
    proc = repo.run("train.py", timeout=180)  # a deadlock fails here, by timeout
    assert "logs from a forked child process are not recorded" in proc.stderr
    runs = flor.runs()
    assert runs.height == 1 and runs["status"][0] == "ok"
    frame = flor.dataframe("loss")
    assert frame.height == 3 * 8 and frame.select("epoch", "step").unique().height == 24  # each step once
    assert "in_worker" not in flor.dataframe().columns
    assert len(flor.checkpoints(runs["run_id"][0])) >= 4  # the checkpoint writer kept working
    again = subprocess.run([sys.executable, "-c", "import florgit as flor; print(flor.runs().height)"],
                           cwd=repo.path, capture_output=True, text=True, check=True)  # fmt: skip
    assert again.stdout.strip() == "1"  # no run from a worker recovered later either
