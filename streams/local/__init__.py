"""The embedded local stack behind `pulse run`: Tansu and redis-server on loopback
(`embedded`), the process launcher (`launcher`) and the demo event generator (`demo`)."""
