# Every package recipe of this br2-external tree.
include $(sort $(wildcard $(BR2_EXTERNAL_MOBILE_ROUTER_PATH)/package/*/*.mk))
