package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	pb "github.com/schat/schat/proto"
)

// The chat client prints two kinds of lines: one result per command and
// one line per event. Both are built as an ordered list of fields (obj),
// which prints either as one JSON object or, for people, as v1's
// "key:value" pairs. Lists of things (messages, groups) are rows: in JSON
// an array inside the one object, for people one indented line each after
// the result line.

// kv is one named field of a printed line.
type kv struct {
	k string
	v any
}

// obj is an ordered set of fields. Values are strings, numbers, bools,
// millis, obj or rows.
type obj []kv

// MarshalJSON writes the fields in their order.
func (o obj) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, f := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(f.k)
		v, err := json.Marshal(f.v)
		if err != nil {
			return nil, fmt.Errorf("field %s: %w", f.k, err)
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// pairs renders the scalar fields as space-separated "key:value".
func (o obj) pairs() string {
	var parts []string
	for _, f := range o {
		switch f.v.(type) {
		case rows, obj:
			continue
		}
		parts = append(parts, f.k+":"+fmt.Sprint(f.v))
	}
	return strings.Join(parts, " ")
}

// row is one element of a list: its fields, and the line people see.
type row struct {
	fields obj
	text   string
}

// rows is a list field. It prints as a JSON array of objects.
type rows []row

// MarshalJSON writes the rows' fields as an array.
func (rs rows) MarshalJSON() ([]byte, error) {
	objs := make([]obj, len(rs))
	for i, r := range rs {
		objs[i] = r.fields
	}
	if len(objs) == 0 {
		return []byte("[]"), nil
	}
	return json.Marshal(objs)
}

// plainRow is a row that people see as its fields' pairs.
func plainRow(o obj) row { return row{fields: o, text: o.pairs()} }

// millis is a time in Unix milliseconds: a number in JSON, a local time
// for people.
type millis int64

func (m millis) String() string {
	if m == 0 {
		return "-"
	}
	return time.UnixMilli(int64(m)).Format("2006-01-02 15:04:05")
}

// report is the outcome of one command.
type report struct {
	cmd    string // the command word
	label  string // v1's words for the result line; defaults to cmd
	code   string // a pb.Code name, or one of the client's own codes
	detail string
	fields obj
	exit   bool // stop reading commands
}

// Codes for refusals made by the client itself, next to pb.Code's names.
const (
	codeOK           = "OK"
	codeUsage        = "USAGE"        // unknown command or bad arguments
	codeUnsupported  = "UNSUPPORTED"  // valid in v1, not offered by this client
	codeTimeout      = "TIMEOUT"      // no answer within --timeout
	codeDisconnected = "DISCONNECTED" // no connection to the server
)

func (r *report) ok() bool { return r.code == codeOK }

// printer writes result and event lines to one writer. It is used from the
// command loop and from event pumps, so every line is written under mu.
type printer struct {
	mu        sync.Mutex
	w         io.Writer
	json      bool
	prompt    string // shown before each command; "" in script mode
	prompting bool   // the prompt is the last thing written
}

func newPrinter(w io.Writer, jsonLines bool, prompt string) *printer {
	return &printer{w: w, json: jsonLines, prompt: prompt}
}

// showPrompt writes the prompt, if there is one.
func (p *printer) showPrompt() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.prompt != "" && !p.prompting {
		io.WriteString(p.w, p.prompt)
		p.prompting = true
	}
}

// inputRead records that the user ended the prompt's line with Enter.
func (p *printer) inputRead() {
	p.mu.Lock()
	p.prompting = false
	p.mu.Unlock()
}

// endInput ends the prompt's line when the input ends without a newline.
func (p *printer) endInput() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.prompting {
		io.WriteString(p.w, "\n")
		p.prompting = false
	}
}

// result prints a command's outcome.
func (p *printer) result(r *report) {
	if p.json {
		o := obj{{"cmd", r.cmd}, {"ok", r.ok()}, {"code", r.code}}
		if r.detail != "" {
			o = append(o, kv{"detail", r.detail})
		}
		p.lines(jsonLine(append(o, r.fields...)))
		return
	}
	label := r.label
	if label == "" {
		label = r.cmd
	}
	head := label + " result:" + r.code
	if s := r.fields.pairs(); s != "" {
		head += " " + s
	}
	if r.detail != "" {
		head += " detail:" + r.detail
	}
	lines := []string{head}
	for _, f := range r.fields {
		if rs, ok := f.v.(rows); ok {
			for _, row := range rs {
				lines = append(lines, "  "+row.text)
			}
		}
	}
	p.lines(lines...)
}

// event prints one pushed event.
func (p *printer) event(name string, fields obj, text string) {
	if p.json {
		p.lines(jsonLine(append(obj{{"event", name}}, fields...)))
		return
	}
	p.lines(text)
}

// lines writes whole lines, moving a waiting prompt below them.
func (p *printer) lines(ls ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var b strings.Builder
	if p.prompting {
		b.WriteString("\r\033[K") // erase the prompt; it is written again below
	}
	for _, l := range ls {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	if p.prompting {
		b.WriteString(p.prompt)
	}
	io.WriteString(p.w, b.String())
}

func jsonLine(o obj) string {
	b, err := json.Marshal(o)
	if err != nil {
		// Every value put in an obj marshals; this is a programming error.
		panic(err)
	}
	return string(b)
}

// ---------------------------------------------------------------------------
// Protocol values as fields.

func enumWord(s, prefix string) string {
	return strings.ToLower(strings.TrimPrefix(s, prefix))
}

func msgFields(m *pb.ChatMessage) obj {
	o := obj{{"grp_id", m.GroupId}, {"seq", m.Seq}, {"sender", m.SenderId},
		{"name", m.SenderName}, {"time", millis(m.TimeMs)},
		{"type", enumWord(m.Type.String(), "MESSAGE_TYPE_")}, {"text", m.Text}}
	if m.ClientMsgId != "" {
		o = append(o, kv{"client_msg_id", m.ClientMsgId})
	}
	if m.Recalled {
		o = append(o, kv{"recalled", true}, kv{"recalled_by", m.RecalledBy})
	}
	if m.File != nil {
		o = append(o, kv{"file", fileFields(m.File)})
	}
	if n := m.System; n != nil {
		o = append(o, kv{"system", obj{{"kind", enumWord(n.Kind.String(), "")},
			{"uid", n.UserId}, {"name", n.Name}}})
	}
	return o
}

// msgLine renders a message as v1 did:
// [<seq>] grp:<gid> sender:<uid> name:<name> <time> : <text>.
func msgLine(m *pb.ChatMessage) string {
	return fmt.Sprintf("[%d] grp:%d sender:%d name:%s %s : %s", m.Seq, m.GroupId,
		m.SenderId, m.SenderName, millis(m.TimeMs), msgText(m))
}

func msgText(m *pb.ChatMessage) string {
	switch {
	case m.Recalled:
		return fmt.Sprintf("(recalled by %d)", m.RecalledBy)
	case m.System != nil:
		return "* " + systemText(m.System)
	case m.Type != pb.MessageType_MESSAGE_TYPE_TEXT:
		return fmt.Sprintf("(%s) %s", enumWord(m.Type.String(), "MESSAGE_TYPE_"), m.Text)
	}
	return m.Text
}

func systemText(n *pb.SystemNote) string {
	switch n.Kind {
	case pb.SystemNote_CREATED:
		return n.Name + " created the group"
	case pb.SystemNote_JOINED:
		return n.Name + " joined the group"
	case pb.SystemNote_LEFT:
		return n.Name + " left the group"
	case pb.SystemNote_KICKED:
		return n.Name + " was removed from the group"
	case pb.SystemNote_RENAMED:
		return "group renamed to [" + n.Name + "]"
	case pb.SystemNote_OWNER_CHANGED:
		return n.Name + " is now the owner"
	}
	return n.Kind.String()
}

func msgRows(ms []*pb.ChatMessage) rows {
	rs := make(rows, len(ms))
	for i, m := range ms {
		rs[i] = row{fields: msgFields(m), text: msgLine(m)}
	}
	return rs
}

// groupFields describes a group; members are listed when the server sent
// them.
func groupFields(g *pb.GroupInfo) obj {
	o := obj{{"grp_name", g.Name}, {"grp_id", g.GroupId}, {"owner", g.OwnerId},
		{"mem_count", g.MemberCount}, {"public", g.Public}, {"has_password", g.HasPassword},
		{"last_seq", g.LastSeq}, {"created", millis(g.CreatedMs)}, {"desc", g.Description},
		{"avatar", g.AvatarFileId}}
	if len(g.Members) > 0 {
		rs := make(rows, len(g.Members))
		for i, m := range g.Members {
			rs[i] = plainRow(obj{{"uid", m.UserId}, {"role", roleWord(m.Role)},
				{"joined", millis(m.JoinedMs)}, {"read_seq", m.ReadSeq}})
		}
		o = append(o, kv{"members", rs})
	}
	return o
}

func roleWord(r pb.Role) string { return enumWord(r.String(), "ROLE_") }

func summaryRows(gs []*pb.GroupSummary) rows {
	rs := make(rows, len(gs))
	for i, g := range gs {
		o := obj{{"grp_id", g.GroupId}, {"grp_name", g.Name}, {"role", roleWord(g.Role)},
			{"last_seq", g.LastSeq}, {"read_seq", g.ReadSeq}, {"unread", g.Unread}}
		rs[i] = row{fields: o, text: fmt.Sprintf("[%d] %s", g.GroupId, o.pairs())}
	}
	return rs
}

func appFields(a *pb.Application) obj {
	return obj{{"grp_id", a.GroupId}, {"grp_name", a.GroupName}, {"uid", a.UserId},
		{"name", a.DisplayName}, {"msg", a.Message}, {"time", millis(a.TimeMs)}}
}

func appRows(as []*pb.Application) rows {
	rs := make(rows, len(as))
	for i, a := range as {
		o := appFields(a)
		rs[i] = row{fields: o, text: "apply " + o.pairs()}
	}
	return rs
}

func profileFields(u *pb.UserProfile) obj {
	return obj{{"uid", u.UserId}, {"name", u.LoginName}, {"display_name", u.DisplayName},
		{"sex", int32(u.Sex)}, {"location", u.Location}, {"desc", u.Description},
		{"created", millis(u.CreatedMs)}, {"avatar", u.AvatarFileId}}
}

func noticeRows(ns []*pb.Notice) rows {
	rs := make(rows, 0, len(ns))
	for _, n := range ns {
		name, fields, text := describeEvent(n.Event)
		o := append(obj{{"notice_id", n.Id}, {"time", millis(n.TimeMs)}, {"event", name}},
			fields...)
		rs = append(rs, row{fields: o, text: "notice " + text})
	}
	return rs
}

// describeEvent names an event and renders its fields and its line.
func describeEvent(e *pb.Event) (name string, fields obj, text string) {
	name, fields = eventFields(e)
	if e.GetNoticeId() != 0 {
		fields = append(fields, kv{"notice_id", e.NoticeId})
	}
	if m := e.GetMessage(); m != nil {
		return name, fields, msgLine(m)
	}
	return name, fields, name + " " + fields.pairs()
}

func eventFields(e *pb.Event) (string, obj) {
	switch b := e.GetBody().(type) {
	case *pb.Event_Message:
		return "message", msgFields(b.Message)
	case *pb.Event_Member:
		m := b.Member
		return "member", obj{{"grp_id", m.GroupId}, {"uid", m.UserId},
			{"change", enumWord(m.Change.String(), "")}, {"mem_count", m.MemberCount}}
	case *pb.Event_GroupChanged:
		return "group_changed", groupFields(b.GroupChanged)
	case *pb.Event_Dissolved:
		d := b.Dissolved
		return "dissolved", obj{{"grp_id", d.GroupId}, {"grp_name", d.Name}, {"by", d.ByUserId}}
	case *pb.Event_Application:
		return "application", appFields(b.Application)
	case *pb.Event_Decided:
		d := b.Decided
		o := obj{{"grp_id", d.GroupId}, {"grp_name", d.GroupName}, {"approved", d.Approved}}
		if d.Reason != pb.ApplicationDecided_DECIDED {
			o = append(o, kv{"reason", enumWord(d.Reason.String(), "")})
		}
		return "decided", o
	case *pb.Event_Recalled:
		r := b.Recalled
		return "recalled", obj{{"grp_id", r.GroupId}, {"seq", r.Seq}, {"by", r.ByUserId}}
	case *pb.Event_Read:
		r := b.Read
		return "read", obj{{"grp_id", r.GroupId}, {"uid", r.UserId}, {"read_seq", r.ReadSeq}}
	case *pb.Event_SessionEnded:
		return "session_ended", obj{{"reason", b.SessionEnded.Reason}}
	}
	return "unknown", nil
}
