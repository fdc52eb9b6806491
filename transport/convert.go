package transport

import (
	"fmt"
	"math"
	"time"

	"github.com/meshcache/meshcache/transport/internal/wirepb"
)

// This file converts between the plain request and response structs of the
// API and the generated wirepb messages.
//
// Encoding borrows: strings are copied into an arena so that a pooled message
// can point at them without a per-field allocation, and byte slices
// (values) are referenced, not copied; the message is only valid until it is
// marshalled. Decoding copies: the results share no memory with the frame
// buffer (proto.Unmarshal already copied bytes fields into fresh slices,
// which the results then own).

// arena hands out []byte copies of strings from one reusable buffer, for
// messages that live only until they are marshalled. A sub-slice stays valid
// when a later append reallocates the buffer: it keeps the old array alive.
type arena struct {
	b     []byte
	lists [][]byte
}

func (a *arena) reset() {
	a.b = a.b[:0]
	clear(a.lists) // drop references to old arrays
	a.lists = a.lists[:0]
}

// str returns s as bytes valid until the next reset; nil for "".
func (a *arena) str(s string) []byte {
	if s == "" {
		return nil
	}
	n := len(a.b)
	a.b = append(a.b, s...)
	return a.b[n:len(a.b):len(a.b)]
}

// strs returns ss as a list of byte slices valid until the next reset.
func (a *arena) strs(ss []string) [][]byte {
	if len(ss) == 0 {
		return nil
	}
	n := len(a.lists)
	for _, s := range ss {
		a.lists = append(a.lists, a.str(s))
	}
	return a.lists[n:len(a.lists):len(a.lists)]
}

func strs(bs [][]byte) []string {
	if len(bs) == 0 {
		return nil
	}
	ss := make([]string, len(bs))
	for i, b := range bs {
		ss[i] = string(b)
	}
	return ss
}

func nonEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

func nanos(d time.Duration) int64 { return int64(d) }

// --- requests ---

// encodeGetRequest and encodeGetResponse are the reference encodings of the
// Get fast path (fastpath.go), which the client and server use instead;
// tests check that both produce the same bytes.
func encodeGetRequest(a *arena, m *wirepb.GetRequest, req GetRequest) {
	m.Group = a.str(req.Group)
	m.Key = a.str(req.Key)
}

func decodeGetRequest(m *wirepb.GetRequest) GetRequest {
	return GetRequest{Group: string(m.Group), Key: string(m.Key)}
}

func encodeGetManyRequest(a *arena, m *wirepb.GetManyRequest, req GetManyRequest) {
	m.Group = a.str(req.Group)
	m.Keys = a.strs(req.Keys)
}

func decodeGetManyRequest(m *wirepb.GetManyRequest) GetManyRequest {
	return GetManyRequest{Group: string(m.Group), Keys: strs(m.Keys)}
}

func encodePeekRequest(a *arena, m *wirepb.PeekRequest, req PeekRequest) {
	m.Group = a.str(req.Group)
	m.Key = a.str(req.Key)
}

func decodePeekRequest(m *wirepb.PeekRequest) PeekRequest {
	return PeekRequest{Group: string(m.Group), Key: string(m.Key)}
}

// encodeWriteRequest fills m from req. It fails with ErrBadRequest if Op or
// Phase is not a defined value.
func encodeWriteRequest(a *arena, m *wirepb.WriteRequest, req WriteRequest) error {
	if !req.Op.Valid() {
		return fmt.Errorf("%w: write op %v", ErrBadRequest, req.Op)
	}
	if !req.Phase.Valid() {
		return fmt.Errorf("%w: write phase %v", ErrBadRequest, req.Phase)
	}
	m.Group = a.str(req.Group)
	m.Op = wirepb.Op(req.Op)
	m.Phase = wirepb.Phase(req.Phase)
	m.Keys = a.strs(req.Keys)
	m.Tags = a.strs(req.Tags)
	m.Items = setItems(a, req.Items)
	m.TtlNanos = nanos(req.TTL)
	m.Origin = a.str(req.Origin)
	m.Id = req.ID
	m.View = req.View
	m.CountHeld = req.CountHeld
	return nil
}

// decodeWriteRequest converts m. It fails with ErrBadRequest if Op or Phase
// is not a defined value, or an item is nil.
func decodeWriteRequest(m *wirepb.WriteRequest) (WriteRequest, error) {
	op, phase := m.GetOp(), m.GetPhase()
	if op < 0 || op > math.MaxUint8 || !Op(op).Valid() {
		return WriteRequest{}, fmt.Errorf("%w: write op %d", ErrBadRequest, op)
	}
	if phase < 0 || phase > math.MaxUint8 || !Phase(phase).Valid() {
		return WriteRequest{}, fmt.Errorf("%w: write phase %d", ErrBadRequest, phase)
	}
	req := WriteRequest{
		Group:     string(m.Group),
		Op:        Op(op),
		Phase:     Phase(phase),
		Keys:      strs(m.Keys),
		Tags:      strs(m.Tags),
		TTL:       time.Duration(m.TtlNanos),
		Origin:    string(m.Origin),
		ID:        m.Id,
		View:      m.View,
		CountHeld: m.CountHeld,
	}
	req.Items = decodeSetItems(m.Items)
	return req, nil
}

// setItems encodes items (nil for none).
func setItems(a *arena, items []SetItem) []*wirepb.SetItem {
	if len(items) == 0 {
		return nil
	}
	ms := make([]wirepb.SetItem, len(items))
	out := make([]*wirepb.SetItem, len(items))
	for i, it := range items {
		ms[i].Key = a.str(it.Key)
		ms[i].Value = it.Value
		ms[i].TtlNanos = nanos(it.TTL)
		ms[i].Tags = a.strs(it.Tags)
		out[i] = &ms[i]
	}
	return out
}

// decodeSetItems converts ms (nil for none).
func decodeSetItems(ms []*wirepb.SetItem) []SetItem {
	if len(ms) == 0 {
		return nil
	}
	items := make([]SetItem, len(ms))
	for i, it := range ms {
		items[i] = SetItem{
			Key:   string(it.GetKey()),
			Value: nonEmpty(it.GetValue()),
			TTL:   time.Duration(it.GetTtlNanos()),
			Tags:  strs(it.GetTags()),
		}
	}
	return items
}

// --- responses ---

func encodeGetResponse(a *arena, m *wirepb.GetResponse, resp GetResponse) {
	m.Value = resp.Value.Value
	m.TtlNanos = nanos(resp.TTL)
	m.AgeNanos = nanos(resp.Age)
	m.Tags = a.strs(resp.Tags)
}

func decodeGetResponse(m *wirepb.GetResponse) GetResponse {
	return GetResponse{Value: Value{
		Value: nonEmpty(m.GetValue()),
		TTL:   time.Duration(m.GetTtlNanos()),
		Age:   time.Duration(m.GetAgeNanos()),
		Tags:  strs(m.GetTags()),
	}}
}

func encodeGetManyResponse(a *arena, m *wirepb.GetManyResponse, resp GetManyResponse) {
	m.Results = nil
	if len(resp.Results) == 0 {
		return
	}
	rs := make([]wirepb.KeyResult, len(resp.Results))
	m.Results = make([]*wirepb.KeyResult, len(resp.Results))
	for i, r := range resp.Results {
		rs[i].Key = a.str(r.Key)
		if r.Err != nil {
			rs[i].ErrorCode = codeOf(r.Err)
			rs[i].ErrorMessage = a.str(messageOf(r.Err))
		} else {
			rs[i].Value = r.Value.Value
			rs[i].TtlNanos = nanos(r.TTL)
			rs[i].AgeNanos = nanos(r.Age)
			rs[i].Tags = a.strs(r.Tags)
		}
		m.Results[i] = &rs[i]
	}
}

func decodeGetManyResponse(m *wirepb.GetManyResponse) GetManyResponse {
	if len(m.GetResults()) == 0 {
		return GetManyResponse{}
	}
	resp := GetManyResponse{Results: make([]KeyResult, len(m.Results))}
	for i, r := range m.Results {
		resp.Results[i] = KeyResult{
			Key: string(r.GetKey()),
			Value: Value{
				Value: nonEmpty(r.GetValue()),
				TTL:   time.Duration(r.GetTtlNanos()),
				Age:   time.Duration(r.GetAgeNanos()),
				Tags:  strs(r.GetTags()),
			},
			Err: errorOf(r.GetErrorCode(), r.GetErrorMessage()),
		}
	}
	return resp
}

func encodePeekResponse(a *arena, m *wirepb.PeekResponse, resp PeekResponse) {
	m.Found = resp.Found
	m.Value = resp.Value.Value
	m.TtlNanos = nanos(resp.TTL)
	m.AgeNanos = nanos(resp.Age)
	m.Tags = a.strs(resp.Tags)
}

func decodePeekResponse(m *wirepb.PeekResponse) PeekResponse {
	return PeekResponse{Found: m.GetFound(), Value: Value{
		Value: nonEmpty(m.GetValue()),
		TTL:   time.Duration(m.GetTtlNanos()),
		Age:   time.Duration(m.GetAgeNanos()),
		Tags:  strs(m.GetTags()),
	}}
}

func encodeWriteResponse(a *arena, m *wirepb.WriteResponse, resp WriteResponse) {
	m.Applied = int64(resp.Applied)
	m.SettleNanos = nanos(resp.Settle)
	m.SettleMember = a.str(resp.SettleMember)
	m.L2Groups = a.strs(resp.L2Groups)
	m.Members = nil
	if len(resp.Members) > 0 {
		ms := make([]wirepb.Member, len(resp.Members))
		m.Members = make([]*wirepb.Member, len(resp.Members))
		for i, mb := range resp.Members {
			ms[i].Name = a.str(mb.Name)
			ms[i].RpcAddr = a.str(mb.RPCAddr)
			ms[i].Incarnation = mb.Incarnation
			m.Members[i] = &ms[i]
		}
	}
}

func decodeWriteResponse(m *wirepb.WriteResponse) WriteResponse {
	resp := WriteResponse{
		Applied:      int(m.GetApplied()),
		Settle:       max(time.Duration(m.GetSettleNanos()), 0),
		SettleMember: string(m.GetSettleMember()),
		L2Groups:     strs(m.GetL2Groups()),
	}
	for _, mb := range m.GetMembers() {
		if mb == nil {
			continue
		}
		resp.Members = append(resp.Members, Member{
			Name:        string(mb.Name),
			RPCAddr:     string(mb.RpcAddr),
			Incarnation: mb.Incarnation,
		})
	}
	return resp
}

func encodeHandOverRequest(a *arena, m *wirepb.HandOverRequest, req HandOverRequest) {
	m.Group = a.str(req.Group)
	m.From = a.str(req.From)
	m.Items = setItems(a, req.Items)
}

func decodeHandOverRequest(m *wirepb.HandOverRequest) HandOverRequest {
	return HandOverRequest{Group: string(m.Group), From: string(m.From), Items: decodeSetItems(m.Items)}
}

func encodeLeaseRequest(a *arena, m *wirepb.LeaseRequest, req LeaseRequest) {
	m.From = a.str(req.From)
	m.Incarnation = req.Incarnation
	m.Base = req.Base
	m.Leaving = req.Leaving
}

func decodeLeaseRequest(m *wirepb.LeaseRequest) LeaseRequest {
	return LeaseRequest{From: string(m.From), Incarnation: m.Incarnation, Base: m.Base, Leaving: m.Leaving}
}

func encodeLeaseResponse(a *arena, m *wirepb.LeaseResponse, resp LeaseResponse) {
	m.Member = resp.Member
	m.Leased = resp.Leased
	m.Base = resp.Base
	m.BaseNames = a.strs(resp.BaseNames)
	m.Incarnation = resp.Incarnation
}

func decodeLeaseResponse(m *wirepb.LeaseResponse) LeaseResponse {
	return LeaseResponse{
		Member:      m.GetMember(),
		Leased:      m.GetLeased(),
		Base:        m.GetBase(),
		BaseNames:   strs(m.GetBaseNames()),
		Incarnation: m.GetIncarnation(),
	}
}

// encodeWriteBatch fills m from reqs; it fails as encodeWriteRequest does.
func encodeWriteBatch(a *arena, m *wirepb.WriteBatchRequest, reqs []WriteRequest) error {
	msgs := make([]wirepb.WriteRequest, len(reqs))
	m.Writes = make([]*wirepb.WriteRequest, len(reqs))
	for i, req := range reqs {
		if err := encodeWriteRequest(a, &msgs[i], req); err != nil {
			return err
		}
		m.Writes[i] = &msgs[i]
	}
	return nil
}

// decodeWriteBatch converts m. A write that does not decode fails the whole
// batch with ErrBadRequest.
func decodeWriteBatch(m *wirepb.WriteBatchRequest) ([]WriteRequest, error) {
	reqs := make([]WriteRequest, 0, len(m.GetWrites()))
	for _, w := range m.GetWrites() {
		if w == nil {
			return nil, fmt.Errorf("%w: nil write in a batch", ErrBadRequest)
		}
		req, err := decodeWriteRequest(w)
		if err != nil {
			return nil, err
		}
		reqs = append(reqs, req)
	}
	return reqs, nil
}

// encodeWriteResults fills m with one result per write.
func encodeWriteResults(a *arena, m *wirepb.WriteBatchResponse, results []WriteResult) {
	msgs := make([]wirepb.WriteResult, len(results))
	resps := make([]wirepb.WriteResponse, len(results))
	m.Results = make([]*wirepb.WriteResult, len(results))
	for i, r := range results {
		if r.Err != nil {
			msgs[i].ErrorCode = codeOf(r.Err)
			msgs[i].ErrorMessage = a.str(messageOf(r.Err))
		} else {
			encodeWriteResponse(a, &resps[i], r.WriteResponse)
			msgs[i].Response = &resps[i]
		}
		m.Results[i] = &msgs[i]
	}
}

// decodeWriteResults converts m, which must hold n results.
func decodeWriteResults(m *wirepb.WriteBatchResponse, n int) ([]WriteResult, error) {
	if len(m.GetResults()) != n {
		return nil, fmt.Errorf("%w: %d results for %d writes", ErrMalformed, len(m.GetResults()), n)
	}
	out := make([]WriteResult, n)
	for i, r := range m.GetResults() {
		if err := errorOf(r.GetErrorCode(), r.GetErrorMessage()); err != nil {
			out[i].Err = err
			continue
		}
		out[i].WriteResponse = decodeWriteResponse(r.GetResponse())
	}
	return out, nil
}
