// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: 2023 mochi-mqtt, mochi-co
// SPDX-FileContributor: mochi-co

package mqtt

import (
	"sort"
	"sync"
	"sync/atomic"

	"github.com/mqkafka/mqkafka/third_party/mochi/packets"
)

// Inflight is a map of InflightMessage keyed on packet id.
type Inflight struct {
	sync.RWMutex
	internal            map[uint16]packets.Packet // internal contains the inflight packets
	receiveQuota        int32                     // remaining inbound qos quota for flow control
	sendQuota           int32                     // remaining outbound qos quota for flow control
	maximumReceiveQuota int32                     // maximum allowed receive quota
	maximumSendQuota    int32                     // maximum allowed send quota

	// mqkafka patch: the packets stored while the send quota was exhausted,
	// oldest first, by packet id and the sequence number waiting records for
	// it; a packet deleted meanwhile (or whose id was reused) is skipped.
	waitQueue []waitingPacket
	waiting   map[uint16]uint64
	waitSeq   uint64
	nWaiting  atomic.Int32 // len(waiting), read without the lock
	// mqkafka patch: the payload bytes of the packets held, read without the lock.
	size atomic.Int64
}

// waitingPacket is an entry of Inflight.waitQueue.
type waitingPacket struct {
	id  uint16
	seq uint64
}

// NewInflights returns a new instance of an Inflight packets map.
func NewInflights() *Inflight {
	return &Inflight{
		internal: map[uint16]packets.Packet{},
	}
}

// Set adds or updates an inflight packet by packet id.
func (i *Inflight) Set(m packets.Packet) bool {
	i.Lock()
	defer i.Unlock()

	old, ok := i.internal[m.PacketID]
	i.internal[m.PacketID] = m
	i.size.Add(int64(len(m.Payload) - len(old.Payload)))
	return !ok
}

// Get returns an inflight packet by packet id.
func (i *Inflight) Get(id uint16) (packets.Packet, bool) {
	i.RLock()
	defer i.RUnlock()

	if m, ok := i.internal[id]; ok {
		return m, true
	}

	return packets.Packet{}, false
}

// Len returns the size of the inflight messages map.
func (i *Inflight) Len() int {
	i.RLock()
	defer i.RUnlock()
	return len(i.internal)
}

// Waiting is how many stored packets wait for send quota. mqkafka patch.
func (i *Inflight) Waiting() int { return int(i.nWaiting.Load()) }

// Bytes is the payload bytes of the packets held. mqkafka patch.
func (i *Inflight) Bytes() int64 { return i.size.Load() }

// Clone returns a new instance of Inflight with the same message data.
// This is used when transferring inflights from a taken-over session.
func (i *Inflight) Clone() *Inflight {
	c := NewInflights()
	i.RLock()
	defer i.RUnlock()
	for k, v := range i.internal {
		c.internal[k] = v
	}
	c.size.Store(i.size.Load())
	return c
}

// GetAll returns all the inflight messages.
func (i *Inflight) GetAll(immediate bool) []packets.Packet {
	i.RLock()
	defer i.RUnlock()

	m := []packets.Packet{}
	for _, v := range i.internal {
		if !immediate || (immediate && v.Expiry < 0) {
			m = append(m, v)
		}
	}

	sort.Slice(m, func(i, j int) bool {
		return uint16(m[i].Created) < uint16(m[j].Created)
	})

	return m
}

// NextImmediate returns the next inflight packet which is indicated to be sent immediately.
// This typically occurs when the quota has been exhausted, and we need to wait until new quota
// is free to continue sending.
func (i *Inflight) NextImmediate() (packets.Packet, bool) {
	// mqkafka patch: GetAll takes the read lock itself. Taking it here as
	// well was a recursive read lock, which deadlocks as soon as a writer
	// (a publish to this client) queues between the two acquisitions.
	m := i.GetAll(true)
	if len(m) > 0 {
		return m[0], true
	}

	return packets.Packet{}, false
}

// Delete removes an in-flight message from the map. Returns true if the message existed.
func (i *Inflight) Delete(id uint16) bool {
	i.Lock()
	defer i.Unlock()

	old, ok := i.internal[id]
	delete(i.internal, id)
	i.size.Add(-int64(len(old.Payload))) // mqkafka patch
	i.unwaitLocked(id)                   // mqkafka patch

	return ok
}

// DeleteSent deletes an outbound packet and, if it had taken a unit of send
// quota (it was not waiting for one), gives the unit back. mqkafka patch.
func (i *Inflight) DeleteSent(id uint16) bool {
	i.Lock()
	old, ok := i.internal[id]
	_, waiting := i.waiting[id]
	delete(i.internal, id)
	i.size.Add(-int64(len(old.Payload)))
	i.unwaitLocked(id)
	i.Unlock()
	if ok && !waiting {
		i.IncreaseSendQuota()
	}
	return ok
}

// unwaitLocked forgets that id waits for send quota. mqkafka patch.
func (i *Inflight) unwaitLocked(id uint16) {
	if _, ok := i.waiting[id]; ok {
		delete(i.waiting, id)
		i.nWaiting.Add(-1)
	}
}

// TakeRecieveQuota reduces the receive quota by 1.
func (i *Inflight) DecreaseReceiveQuota() {
	if atomic.LoadInt32(&i.receiveQuota) > 0 {
		atomic.AddInt32(&i.receiveQuota, -1)
	}
}

// TakeRecieveQuota increases the receive quota by 1.
func (i *Inflight) IncreaseReceiveQuota() {
	if atomic.LoadInt32(&i.receiveQuota) < atomic.LoadInt32(&i.maximumReceiveQuota) {
		atomic.AddInt32(&i.receiveQuota, 1)
	}
}

// ResetReceiveQuota resets the receive quota to the maximum allowed value.
func (i *Inflight) ResetReceiveQuota(n int32) {
	atomic.StoreInt32(&i.receiveQuota, n)
	atomic.StoreInt32(&i.maximumReceiveQuota, n)
}

// DecreaseSendQuota reduces the send quota by 1.
func (i *Inflight) DecreaseSendQuota() {
	if atomic.LoadInt32(&i.sendQuota) > 0 {
		atomic.AddInt32(&i.sendQuota, -1)
	}
}

// IncreaseSendQuota increases the send quota by 1.
func (i *Inflight) IncreaseSendQuota() {
	// mqkafka patch: compare-and-swap, so that concurrent increases cannot
	// take the quota past its maximum.
	for {
		q := atomic.LoadInt32(&i.sendQuota)
		if q >= atomic.LoadInt32(&i.maximumSendQuota) || atomic.CompareAndSwapInt32(&i.sendQuota, q, q+1) {
			return
		}
	}
}

// TakeSendQuota is called for a QoS 1/2 packet just stored (Set) for sending:
// it takes one unit of send quota for it and reports true if one is free and
// no earlier packet waits for one, else queues the packet behind those
// waiting and reports false; NextWaiting hands it out once quota is back.
// Without a send quota (the client set no Receive Maximum) it reports true.
// mqkafka patch: replaces the unlocked check of the quota in
// Server.publishToClient, which could lose units (see MQKAFKA_PATCHES.md).
func (i *Inflight) TakeSendQuota(id uint16) bool {
	i.Lock()
	defer i.Unlock()
	if atomic.LoadInt32(&i.maximumSendQuota) == 0 {
		return true
	}
	if len(i.waiting) == 0 {
		for {
			q := atomic.LoadInt32(&i.sendQuota)
			if q <= 0 {
				break
			}
			if atomic.CompareAndSwapInt32(&i.sendQuota, q, q-1) {
				return true
			}
		}
	}
	if i.waiting == nil {
		i.waiting = map[uint16]uint64{}
	}
	i.waitSeq++
	if _, ok := i.waiting[id]; !ok {
		i.nWaiting.Add(1)
	}
	i.waiting[id] = i.waitSeq
	i.waitQueue = append(i.waitQueue, waitingPacket{id: id, seq: i.waitSeq})
	return false
}

// NextWaiting returns the oldest packet queued by TakeSendQuota and takes a
// unit of send quota for it, if there is one and a unit is free. The packet
// stays in flight until its acknowledgement, which gives the unit back.
// mqkafka patch.
func (i *Inflight) NextWaiting() (packets.Packet, bool) {
	if i.nWaiting.Load() == 0 {
		return packets.Packet{}, false
	}
	i.Lock()
	defer i.Unlock()
	for len(i.waitQueue) > 0 && len(i.waiting) > 0 && atomic.LoadInt32(&i.sendQuota) > 0 {
		w := i.waitQueue[0]
		i.waitQueue = i.waitQueue[1:]
		if seq, ok := i.waiting[w.id]; !ok || seq != w.seq {
			continue // deleted (expired, cleared) while it waited
		}
		i.unwaitLocked(w.id)
		pk, ok := i.internal[w.id]
		if !ok {
			continue
		}
		atomic.AddInt32(&i.sendQuota, -1) // only ever taken under the lock
		return pk, true
	}
	if len(i.waiting) == 0 {
		i.waitQueue = i.waitQueue[:0]
	}
	return packets.Packet{}, false
}

// ResetSendQuota resets the send quota to the maximum allowed value.
func (i *Inflight) ResetSendQuota(n int32) {
	atomic.StoreInt32(&i.sendQuota, n)
	atomic.StoreInt32(&i.maximumSendQuota, n)
}
