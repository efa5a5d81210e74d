"""notify: tells patients what happens to their data, on the channels they chose."""
