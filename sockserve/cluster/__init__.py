"""The cluster protocol: the wire both sides share.

``protocol`` (messages and codec, pure), ``peer`` (the worker state table, pure),
``channel`` (the only sendmsg/recvmsg: SOCK_SEQPACKET with SCM_RIGHTS).
"""
