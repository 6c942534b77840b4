################################################################################
#
# python-mobile-router
#
################################################################################

# The package is the repository that holds this br2-external tree:
# buildroot-config/ sits at its top, so the Python project (pyproject.toml,
# router/) is one level above $(BR2_EXTERNAL_MOBILE_ROUTER_PATH), i.e. two
# levels above package/. Keep VERSION equal to pyproject.toml's version.
# A local site is rsync'ed (VCS directories excluded) and needs no .hash
# file; keep the Buildroot output directory (O=) outside this repository.
PYTHON_MOBILE_ROUTER_VERSION = 0.1.0
PYTHON_MOBILE_ROUTER_SITE = $(BR2_EXTERNAL_MOBILE_ROUTER_PATH)/..
PYTHON_MOBILE_ROUTER_SITE_METHOD = local
# pyproject.toml uses the setuptools.build_meta backend; the python-package
# infrastructure adds host-python-setuptools to the dependencies itself.
PYTHON_MOBILE_ROUTER_SETUP_TYPE = setuptools
# The repository declares no license yet (no LICENSE file, no license key
# in pyproject.toml): update both this and LICENSE_FILES when it does.
PYTHON_MOBILE_ROUTER_LICENSE = Proprietary

$(eval $(python-package))
