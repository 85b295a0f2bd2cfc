"""The benchmark tool behind `python -m fused_inception bench` and `report`: the case table (benchcases),
running and timing cases (benchrun, timing), FLOP and byte floors (roofline), the command (cli) and the
table and plots (report). Not needed to use the op; kept apart from the product's modules."""
