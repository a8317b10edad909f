"""Building the couriers: one per delivery target, from the config.

The command center's contract (the uplink) always has a courier, a thread of the daemon or a
process of its own (``uplink.process``); each target configured under ``alarms.targets`` gets a
courier with the sender for its kind.  The daemon builds the whole set at start and a reload
builds one for each target it adds or replaces; the :class:`~parkwatch.alarms.dispatch.Dispatcher`
holds them and swaps them in.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from parkwatch.alarms.channels.registry import CHANNELS
from parkwatch.alarms.channels.shaping import Grouped, Paced
from parkwatch.alarms.channels.uplink import carrier as uplink_carrier
from parkwatch.alarms.courierproc import CourierProcess
from parkwatch.alarms.delivery import Courier
from parkwatch.alarms.dispatch import AnyCourier
from parkwatch.alarms.ratewindow import RateWindow
from parkwatch.alarms.records import Mark
from parkwatch.alarms.senders import ManySender, Sender
from parkwatch.alarms.shaped import ShapedCourier
from parkwatch.alarms.shaper import Shaper
from parkwatch.alarms.uplink import UplinkPublisher
from parkwatch.config.contacts import people_of
from parkwatch.config.delivery import UPLINK, TargetBase
from parkwatch.config.model import ParkConfig
from parkwatch.mqttlink.link import MqttLink

#: where a courier hands its delivery marks (the commit stage, the store's only writer)
Marks = Callable[[list[Mark]], None]
#: a target's delivery observer (self-metrics): called with each delivered row's latency
Observer = Callable[[float], None]


def uplink_courier(cfg: ParkConfig, uplink: UplinkPublisher, store_path: Path, marks: Marks,
                   on_delivered: Observer) -> AnyCourier:
    """The command center's courier: in a process of its own when ``uplink.process`` is set,
    else a thread publishing through the daemon's uplink link."""
    link = uplink.link
    if cfg.uplink.process:
        return CourierProcess(cfg, store_path, marks, on_delivered)
    carrier = uplink_carrier(link, uplink.topics)
    return Courier(UPLINK, carrier.sender, store_path, carrier.backoff, ready=carrier.ready,
                   on_delivered=on_delivered, marks=marks)


def target_courier(cfg: ParkConfig, name: str, link: MqttLink, store_path: Path, marks: Marks,
                   on_delivered: Observer) -> Courier:
    """The courier of the configured target `name` (``alarms.targets``), with the sender,
    backoff and readiness its channel gives (:mod:`parkwatch.alarms.channels`); an MQTT target
    publishes through the uplink's `link`; a channel that reaches people is given the contacts
    this target reaches, by subscriber."""
    target = cfg.alarms.targets[name]
    channel = CHANNELS[target.type]
    carrier = (channel.carrier(name, target, link) if channel.reaches is None
               else channel.carrier(name, target, link, people_of(cfg.alarms, name)))
    shaper = target_shaper(cfg, name, target, carrier.sender, store_path)
    if shaper is not None and isinstance(target, Paced):
        return ShapedCourier(name, carrier.sender, store_path, carrier.backoff,
                             ready=carrier.ready, on_delivered=on_delivered, marks=marks,
                             shaper=shaper, timeout_s=target.timeout_s)
    return Courier(name, carrier.sender, store_path, carrier.backoff, ready=carrier.ready,
                   on_delivered=on_delivered, marks=marks)


def target_shaper(cfg: ParkConfig, name: str, target: TargetBase, sender: Sender,
                  store_path: Path) -> Shaper | None:
    """The rate window and grouping of a target whose channel has them
    (:mod:`parkwatch.alarms.channels.shaping`), its window kept in
    ``{state_dir}/shaping/{name}.json``; None for a target carried as fast as it answers."""
    if not isinstance(target, Paced):
        return None
    group_by: list[str] = []
    wait = 0.0
    if isinstance(target, Grouped):
        group_by, wait = list(target.group_by), target.group_wait_s
    elif not target.rate_limit:
        return None
    window = RateWindow(target.rate_limit, store_path.parent / "shaping" / f"{name}.json")
    return Shaper(window, group_by, wait, {s.id: s.driver for s in cfg.sensors},
                  fold=isinstance(target, Grouped) and isinstance(sender, ManySender),
                  personal=CHANNELS[target.type].personal)


def all_couriers(cfg: ParkConfig, uplink: UplinkPublisher, store_path: Path, marks: Marks,
                 observer: Callable[[str], Observer]) -> dict[str, AnyCourier]:
    """One courier per target: the command-center contract, then each configured one
    (`observer(name)`: the delivery observer of the target `name`)."""
    out: dict[str, AnyCourier] = {
        UPLINK: uplink_courier(cfg, uplink, store_path, marks, observer(UPLINK))}
    for name in cfg.alarms.targets:
        out[name] = target_courier(cfg, name, uplink.link, store_path, marks, observer(name))
    return out
