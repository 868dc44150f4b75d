"""The pure model of Hodei Jobs: jobs, their states, workers, placement and errors. No I/O."""
