# net/netdevice.sh, variant for a named device: when NETIF is set, test it instead of the
# eth*/enp* devices the stock script looks for (dom0's vif<domid>.<n>).
s|^ip link show \|grep '\^\[0-9\]' \| grep -oE.*> "\$TMP_LIST_NETDEV"$|if [ -n "$NETIF" ]; then echo "$NETIF" > "$TMP_LIST_NETDEV"; else &; fi|
