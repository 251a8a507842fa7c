"""Sandbox tests of the DevStack plugin (devstack/) and the shell linters."""
