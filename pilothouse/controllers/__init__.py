"""The built-in controllers, one module each, run by the controller manager (manager.py).

A controller module defines `CONTROLLER`, a `pilothouse.client.Controller` subclass; the
manager finds every such module in this package, so adding a control loop is adding a
module. Controllers talk to the API only through `pilothouse.client`.
"""
