"""A small FlorDB-style training script; its only florgit change is the import."""

import torch

import florgit as flor

seed = flor.arg("seed", 7)
lr = flor.arg("lr", 1e-2)
epochs = flor.arg("epochs", 2)
hidden = flor.arg("hidden", 16)

torch.manual_seed(seed)
x = torch.randn(512, 8)
y = (x[:, :4].sum(dim=1, keepdim=True) > 0).float()
train_x, train_y, val_x, val_y = x[:384], y[:384], x[384:], y[384:]

model = torch.nn.Sequential(torch.nn.Linear(8, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))
optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
loss_fn = torch.nn.BCEWithLogitsLoss()

with flor.checkpointing(model=model, optimizer=optimizer):
    for epoch in flor.loop("epoch", range(epochs)):
        for step in flor.loop("step", range(12)):
            batch = slice(step * 32, (step + 1) * 32)
            optimizer.zero_grad()
            loss = loss_fn(model(train_x[batch]), train_y[batch])
            loss.backward()
            optimizer.step()
            flor.log("loss", loss.item())
        with torch.no_grad():
            val_acc = ((model(val_x) > 0).float() == val_y).float().mean().item()
        flor.log("val_acc", val_acc)

flor.log("final_val_acc", val_acc)
