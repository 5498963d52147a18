"""The daemon's loops: each a small thread around pure logic, testable one step at a time."""
