################################################################################
#
# python-vici
#
################################################################################

# Not packaged in Buildroot 2024.02. The version follows what the project is
# tested with (pyproject.toml: vici >= 5.9.8); the vici wire protocol is the
# same for strongSwan 5.9.x and 6.x charon.
PYTHON_VICI_VERSION = 6.0.3
PYTHON_VICI_SOURCE = vici-$(PYTHON_VICI_VERSION).tar.gz
PYTHON_VICI_SITE = https://files.pythonhosted.org/packages/57/83/88b626e3f62dc986cd7ce2fa9fb37d9b3259fbc7a3864a51b98e5c516ec7
PYTHON_VICI_SETUP_TYPE = setuptools
PYTHON_VICI_LICENSE = MIT
PYTHON_VICI_LICENSE_FILES = LICENSE

$(eval $(python-package))
