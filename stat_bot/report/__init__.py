"""Job output -> messages (text, blocks, code, file) and the notifiers that carry them."""
