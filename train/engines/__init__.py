"""Training engines: the code that runs one framework's forward, backward and update passes."""
