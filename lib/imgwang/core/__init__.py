"""Small infrastructure every layer may use: atomic writes, clock, errors, secrets, device, threads,
progress bars, interrupts, plain values. Imports nothing else of imgwang."""
