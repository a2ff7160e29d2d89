"""pynode: an Erlang-style node runtime over rpyc."""
