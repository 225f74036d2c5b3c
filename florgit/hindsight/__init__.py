"""Hindsight replay: carry new ``flor.log`` statements into past code versions, plan
the least work that computes them exactly, and run it from checkpoints."""
