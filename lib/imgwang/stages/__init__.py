"""What each stage notebook runs: thin notebooks call these, so the logic is tested here."""
