"""SB3 callbacks shared by the library's agents: periodic checkpoints and the best-model save."""
