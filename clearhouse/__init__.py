"""The application shell: the `clearhouse` command, the simulator and the demo.

It sits above every other package and wires them together; nothing imports it.
"""
