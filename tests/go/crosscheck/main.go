// Command crosscheck is the Go side of reclab's interoperability tests.
//
// It declares the agentproto types exactly as the Go package does (same
// fields, same cbor tags, see agentproto-go-api.txt) and uses the real
// github.com/fxamacker/cbor with its default options, so what it writes is
// what a Go peer writes and what it accepts is what a Go peer accepts.
//
//	crosscheck gen DIR          write recordings, a frame stream, a cut recording,
//	                            vectors.json and manifest.json into DIR
//	crosscheck vectors          print the hex vectors (JSON: name -> hex)
//	crosscheck check FILE       strictly decode a recording, re-encode every record,
//	                            report the first byte difference (exit 1), else the count
//	crosscheck checkframes FILE the same for a stream of frames
//	crosscheck bench FILE       ReadRecording-style decode into structs; prints JSON
//	                            {"records": N, "seconds": S}
//	crosscheck agent            serve file-op RPCs (Stat, Lstat) and PATH queries on
//	                            stdin/stdout, as a Go agent's Mux does (benchmark anchor)
//
// Build (Debian layout): GO111MODULE=off GOPATH=/usr/share/gocode go build
package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"

	cbor "github.com/fxamacker/cbor"
)

// ---- the agentproto types, exactly as declared by the Go package -----------------

type Direction uint8

const (
	DirSend Direction = 1
	DirRecv Direction = 2
)

type FrameType uint8

const (
	FrameExec      FrameType = 1
	FrameData      FrameType = 2
	FrameEOF       FrameType = 3
	FrameSignal    FrameType = 4
	FrameExit      FrameType = 5
	FrameError     FrameType = 6
	FrameLog       FrameType = 7
	FrameConfig    FrameType = 8
	FramePathQuery FrameType = 9
	FramePathInfo  FrameType = 10
	FrameFileOp    FrameType = 11
	FrameFileResp  FrameType = 12
)

type FileOp uint8

const (
	FileOpOpen      FileOp = 1
	FileOpCreate    FileOp = 2
	FileOpOpenFile  FileOp = 3
	FileOpClose     FileOp = 4
	FileOpReadAt    FileOp = 5
	FileOpWriteAt   FileOp = 6
	FileOpStat      FileOp = 7
	FileOpLstat     FileOp = 8
	FileOpReadDir   FileOp = 9
	FileOpMkdir     FileOp = 10
	FileOpMkdirAll  FileOp = 11
	FileOpRemove    FileOp = 12
	FileOpRename    FileOp = 13
	FileOpChmod     FileOp = 14
	FileOpTruncate  FileOp = 15
	FileOpGetwd     FileOp = 16
	FileOpFsync     FileOp = 17
	FileOpReadlink  FileOp = 18
	FileOpSymlink   FileOp = 19
	FileOpLink      FileOp = 20
	FileOpChown     FileOp = 21
	FileOpChtimes   FileOp = 22
	FileOpStatfs    FileOp = 23
	FileOpFstat     FileOp = 24
	FileOpFtruncate FileOp = 25
)

type RecordType uint8

const (
	RecordSessionHeader RecordType = 1
	RecordCommandStart  RecordType = 2
	RecordFrame         RecordType = 3
	RecordCommandEnd    RecordType = 4
	RecordSessionFooter RecordType = 5
)

type AgentConfig struct {
	EnvKeep   []string `cbor:"env_keep"`
	EnvRemove []string `cbor:"env_remove"`
}

type ExecMsg struct {
	Path     string   `cbor:"path"`
	Argv     []string `cbor:"argv"`
	Env      []string `cbor:"env"`
	Cwd      string   `cbor:"cwd"`
	ExtraFDs []uint32 `cbor:"fds,omitempty"`
}

type LogEntry struct {
	Level int      `cbor:"lvl"`
	Msg   string   `cbor:"msg"`
	Attrs []string `cbor:"a,omitempty"`
}

type PathQuery struct {
	Paths []string `cbor:"paths,omitempty"`
}

type PathInfoEntry struct {
	Name       string `cbor:"name"`
	RemotePath string `cbor:"path"`
	Mode       uint32 `cbor:"mode"`
	Size       int64  `cbor:"size"`
	MTimeNanos int64  `cbor:"mtime,omitempty"`
}

type PathInfo struct {
	Entries []PathInfoEntry `cbor:"entries"`
}

type FileStat struct {
	Name       string `cbor:"n"`
	Size       int64  `cbor:"s"`
	Mode       uint32 `cbor:"m"`
	MTimeNanos int64  `cbor:"t,omitempty"`
	ATimeNanos int64  `cbor:"at,omitempty"`
	CTimeNanos int64  `cbor:"ct,omitempty"`
	UID        uint32 `cbor:"uid,omitempty"`
	GID        uint32 `cbor:"gid,omitempty"`
	Nlink      uint32 `cbor:"nl,omitempty"`
	Rdev       uint32 `cbor:"rd,omitempty"`
	Blocks     uint64 `cbor:"bl,omitempty"`
	Blksize    uint32 `cbor:"bs,omitempty"`
	Ino        uint64 `cbor:"ino,omitempty"`
	IsDir      bool   `cbor:"d,omitempty"`
}

type FileStatfs struct {
	Blocks  uint64 `cbor:"b,omitempty"`
	Bfree   uint64 `cbor:"bf,omitempty"`
	Bavail  uint64 `cbor:"ba,omitempty"`
	Files   uint64 `cbor:"f,omitempty"`
	Ffree   uint64 `cbor:"ff,omitempty"`
	Bsize   uint32 `cbor:"bs,omitempty"`
	Frsize  uint32 `cbor:"fr,omitempty"`
	NameLen uint32 `cbor:"nl,omitempty"`
}

type FileDirEntry struct {
	Stat FileStat `cbor:"st"`
}

type FileOpReq struct {
	ReqID      uint32 `cbor:"id"`
	Op         FileOp `cbor:"op"`
	Path       string `cbor:"p,omitempty"`
	NewPath    string `cbor:"np,omitempty"`
	Flags      int32  `cbor:"fl,omitempty"`
	Mode       uint32 `cbor:"mo,omitempty"`
	UID        uint32 `cbor:"uid,omitempty"`
	GID        uint32 `cbor:"gid,omitempty"`
	Handle     uint32 `cbor:"h,omitempty"`
	Offset     int64  `cbor:"of,omitempty"`
	Size       int64  `cbor:"sz,omitempty"`
	AtimeNanos int64  `cbor:"at,omitempty"`
	MTimeNanos int64  `cbor:"mt,omitempty"`
	Data       []byte `cbor:"d,omitempty"`
}

type FileOpResp struct {
	ReqID   uint32         `cbor:"id"`
	Errno   uint32         `cbor:"er,omitempty"`
	ErrMsg  string         `cbor:"em,omitempty"`
	Handle  uint32         `cbor:"h,omitempty"`
	Data    []byte         `cbor:"d,omitempty"`
	N       int64          `cbor:"n,omitempty"`
	EOF     bool           `cbor:"eof,omitempty"`
	Path    string         `cbor:"p,omitempty"`
	Stat    *FileStat      `cbor:"st,omitempty"`
	Statfs  *FileStatfs    `cbor:"sf,omitempty"`
	Entries []FileDirEntry `cbor:"en,omitempty"`
}

type Frame struct {
	Type     FrameType    `cbor:"t"`
	Stream   uint32       `cbor:"s,omitempty"`
	Data     []byte       `cbor:"d,omitempty"`
	Signal   int          `cbor:"sig,omitempty"`
	Code     int          `cbor:"c,omitempty"`
	Error    string       `cbor:"e,omitempty"`
	Exec     *ExecMsg     `cbor:"x,omitempty"`
	Log      *LogEntry    `cbor:"l,omitempty"`
	Config   *AgentConfig `cbor:"cfg,omitempty"`
	Query    *PathQuery   `cbor:"q,omitempty"`
	Info     *PathInfo    `cbor:"i,omitempty"`
	FileOp   *FileOpReq   `cbor:"fop,omitempty"`
	FileResp *FileOpResp  `cbor:"frp,omitempty"`
}

type SessionHeader struct {
	Version     string `cbor:"version"`
	StartTime   int64  `cbor:"start_time"`
	LocalUser   string `cbor:"local_user"`
	LocalPID    int    `cbor:"local_pid"`
	BackendType string `cbor:"backend_type,omitempty"`
	BackendAddr string `cbor:"backend_addr,omitempty"`
	AgentPath   string `cbor:"agent_path"`
}

type CommandStart struct {
	SeqNum    uint32  `cbor:"seq"`
	StartTime int64   `cbor:"start_time"`
	Exec      ExecMsg `cbor:"exec"`
}

type RecordedFrame struct {
	SeqNum    uint32    `cbor:"seq"`
	Timestamp int64     `cbor:"ts"`
	Direction Direction `cbor:"dir"`
	Frame     Frame     `cbor:"frame"`
}

type CommandEnd struct {
	SeqNum   uint32 `cbor:"seq"`
	EndTime  int64  `cbor:"end_time"`
	ExitCode int    `cbor:"exit_code"`
}

type SessionFooter struct {
	EndTime      int64  `cbor:"end_time"`
	CommandCount uint32 `cbor:"command_count"`
}

type Record struct {
	Type     RecordType     `cbor:"type"`
	Header   *SessionHeader `cbor:"header,omitempty"`
	CmdStart *CommandStart  `cbor:"cmd_start,omitempty"`
	Frame    *RecordedFrame `cbor:"frame,omitempty"`
	CmdEnd   *CommandEnd    `cbor:"cmd_end,omitempty"`
	Footer   *SessionFooter `cbor:"footer,omitempty"`
}

// ---- a Recorder equivalent with a deterministic clock -----------------------------

const baseTime int64 = 1_700_000_000_123_456_789

type recorder struct {
	w       io.Writer
	nextSeq uint32
	now     int64
	records int
}

func newRecorder(w io.Writer) *recorder { return &recorder{w: w, nextSeq: 1, now: baseTime} }

func (r *recorder) tick() int64 { r.now += 1_000_537; return r.now }

func (r *recorder) write(rec *Record) {
	b, err := cbor.Marshal(rec) // default EncOptions, like the Go package
	must(err)
	_, err = r.w.Write(b)
	must(err)
	r.records++
}

func (r *recorder) header(h SessionHeader) {
	r.write(&Record{Type: RecordSessionHeader, Header: &h})
}

func (r *recorder) start(x ExecMsg) uint32 {
	seq := r.nextSeq
	r.nextSeq++
	r.write(&Record{Type: RecordCommandStart, CmdStart: &CommandStart{SeqNum: seq, StartTime: r.tick(), Exec: x}})
	return seq
}

func (r *recorder) frame(seq uint32, dir Direction, f Frame) {
	r.write(&Record{Type: RecordFrame, Frame: &RecordedFrame{SeqNum: seq, Timestamp: r.tick(), Direction: dir, Frame: f}})
}

func (r *recorder) end(seq uint32, code int) {
	r.write(&Record{Type: RecordCommandEnd, CmdEnd: &CommandEnd{SeqNum: seq, EndTime: r.tick(), ExitCode: code}})
}

func (r *recorder) footer() {
	r.write(&Record{Type: RecordSessionFooter, Footer: &SessionFooter{EndTime: r.tick(), CommandCount: r.nextSeq - 1}})
}

// ---- test data ----------------------------------------------------------------------

func allBytes() []byte {
	b := make([]byte, 256)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

func fullStat() FileStat {
	return FileStat{
		Name: "données ✓", Size: math.MaxInt64, Mode: 1<<31 | 0o755, MTimeNanos: baseTime,
		ATimeNanos: -1, CTimeNanos: math.MinInt64, UID: math.MaxUint32, GID: 1000, Nlink: 2,
		Rdev: 259, Blocks: math.MaxUint64, Blksize: 4096, Ino: math.MaxUint64, IsDir: true,
	}
}

func fullStatfs() FileStatfs {
	return FileStatfs{
		Blocks: math.MaxUint64, Bfree: 1 << 40, Bavail: 1<<32 + 1, Files: 65536, Ffree: 255,
		Bsize: 4096, Frsize: math.MaxUint32, NameLen: 255,
	}
}

// fileOpPairs returns one request/response pair for every file op, with the
// fields each op uses (and some error answers).
func fileOpPairs() ([]FileOpReq, []FileOpResp) {
	var reqs []FileOpReq
	var resps []FileOpResp
	add := func(q FileOpReq, p FileOpResp) {
		q.ReqID = uint32(len(reqs) + 1)
		p.ReqID = q.ReqID
		reqs = append(reqs, q)
		resps = append(resps, p)
	}
	add(FileOpReq{Op: FileOpOpen, Path: "/etc/hosts", Flags: 0}, FileOpResp{Handle: 1})
	add(FileOpReq{Op: FileOpCreate, Path: "/tmp/out"}, FileOpResp{Handle: 2})
	add(FileOpReq{Op: FileOpOpenFile, Path: "/tmp/x", Flags: 0o1101, Mode: 0o644}, FileOpResp{Errno: 13, ErrMsg: "permission denied"})
	add(FileOpReq{Op: FileOpClose, Handle: 1}, FileOpResp{})
	add(FileOpReq{Op: FileOpReadAt, Handle: 2, Offset: 1 << 33, Size: 256}, FileOpResp{Data: allBytes(), N: 256, EOF: true})
	add(FileOpReq{Op: FileOpWriteAt, Handle: 2, Offset: 0, Data: allBytes()}, FileOpResp{N: 256})
	add(FileOpReq{Op: FileOpStat, Path: "/"}, FileOpResp{Stat: &FileStat{Name: "/", Size: 4096, Mode: 1<<31 | 0o755}})
	add(FileOpReq{Op: FileOpLstat, Path: "/lnk"}, FileOpResp{Stat: &FileStat{}}) // pointer to a zero struct is kept
	add(FileOpReq{Op: FileOpReadDir, Path: "/d"}, FileOpResp{Entries: []FileDirEntry{{Stat: fullStat()}, {Stat: FileStat{Name: "a"}}}})
	add(FileOpReq{Op: FileOpReadDir, Path: "/empty"}, FileOpResp{Entries: []FileDirEntry{}})
	add(FileOpReq{Op: FileOpMkdir, Path: "/d/n", Mode: 0o700}, FileOpResp{Errno: 17, ErrMsg: "file exists"})
	add(FileOpReq{Op: FileOpMkdirAll, Path: "/d/n/m/o", Mode: 0o755}, FileOpResp{})
	add(FileOpReq{Op: FileOpRemove, Path: "/d/n"}, FileOpResp{Errno: 39, ErrMsg: "directory not empty"})
	add(FileOpReq{Op: FileOpRename, Path: "/a", NewPath: "/b"}, FileOpResp{})
	add(FileOpReq{Op: FileOpChmod, Path: "/b", Mode: 1<<23 | 0o4755}, FileOpResp{})
	add(FileOpReq{Op: FileOpTruncate, Path: "/b", Size: math.MaxInt64}, FileOpResp{Errno: 22, ErrMsg: "invalid argument"})
	add(FileOpReq{Op: FileOpGetwd}, FileOpResp{Path: "/home/élise"})
	add(FileOpReq{Op: FileOpFsync, Handle: math.MaxUint32}, FileOpResp{Errno: 9, ErrMsg: "bad file descriptor"})
	add(FileOpReq{Op: FileOpReadlink, Path: "/lnk"}, FileOpResp{Path: "target"})
	add(FileOpReq{Op: FileOpSymlink, Path: "target", NewPath: "/lnk2"}, FileOpResp{})
	add(FileOpReq{Op: FileOpLink, Path: "/b", NewPath: "/c"}, FileOpResp{})
	add(FileOpReq{Op: FileOpChown, Path: "/c", UID: math.MaxUint32, GID: 0}, FileOpResp{})
	add(FileOpReq{Op: FileOpChtimes, Path: "/c", AtimeNanos: -1, MTimeNanos: math.MinInt64}, FileOpResp{})
	sf := fullStatfs()
	add(FileOpReq{Op: FileOpStatfs, Path: "/"}, FileOpResp{Statfs: &sf})
	add(FileOpReq{Op: FileOpStatfs, Path: "/zero"}, FileOpResp{Statfs: &FileStatfs{}})
	add(FileOpReq{Op: FileOpFstat, Handle: 2}, FileOpResp{Stat: &FileStat{Name: "out", Size: 256, Mode: 0o644, MTimeNanos: baseTime}})
	add(FileOpReq{Op: FileOpFtruncate, Handle: 2, Size: 0}, FileOpResp{})
	add(FileOpReq{Op: FileOp(200), Path: "/future"}, FileOpResp{Errno: 38, ErrMsg: "function not implemented"})
	add(FileOpReq{Op: FileOpOpen, Path: "/all", NewPath: "/fields", Flags: math.MinInt32, Mode: math.MaxUint32,
		UID: 1, GID: 2, Handle: 3, Offset: math.MinInt64, Size: -1, AtimeNanos: 1, MTimeNanos: math.MaxInt64, Data: []byte{0}},
		FileOpResp{Errno: math.MaxUint32, ErrMsg: "everything", Handle: math.MaxUint32, Data: []byte{0xff}, N: math.MinInt64,
			EOF: true, Path: "p", Stat: &FileStat{}, Statfs: &FileStatfs{}, Entries: []FileDirEntry{{}}})
	return reqs, resps
}

// genEveryType writes a recording that exercises every record, frame and field kind.
func genEveryType(w io.Writer) *recorder {
	r := newRecorder(w)
	r.header(SessionHeader{Version: "1.3.4", StartTime: baseTime, LocalUser: "tëster", LocalPID: 4242,
		BackendType: "ssh", BackendAddr: "build-7.example:22", AgentPath: "/usr/local/bin/mproxy-agent"})

	// Command 1: config, exec with nil env, all stream kinds, signals, logs, exit.
	x1 := ExecMsg{Path: "/bin/sh", Argv: []string{"sh", "-c", "echo hi; echo ✓ >&2"}, Env: nil, Cwd: "/home/tëster"}
	s1 := r.start(x1)
	// Command 2 starts before command 1 ends: frames interleave.
	x2 := ExecMsg{Path: "/usr/bin/env", Argv: []string{}, Env: []string{}, Cwd: "", ExtraFDs: []uint32{3, math.MaxUint32}}
	s2 := r.start(x2)
	r.frame(s1, DirSend, Frame{Type: FrameConfig, Config: &AgentConfig{}})
	r.frame(s1, DirSend, Frame{Type: FrameConfig, Config: &AgentConfig{EnvKeep: []string{}, EnvRemove: nil}})
	r.frame(s1, DirSend, Frame{Type: FrameConfig, Config: &AgentConfig{EnvKeep: []string{"PATH", "LC_*"}, EnvRemove: []string{"/^SSH_/"}}})
	r.frame(s1, DirSend, Frame{Type: FrameExec, Exec: &x1})
	r.frame(s2, DirSend, Frame{Type: FrameExec, Exec: &x2})
	r.frame(s1, DirSend, Frame{Type: FrameData, Stream: 0, Data: []byte("input\n")})
	r.frame(s2, DirRecv, Frame{Type: FrameData, Stream: 3, Data: allBytes()})
	r.frame(s1, DirSend, Frame{Type: FrameEOF, Stream: 0})
	r.frame(s1, DirRecv, Frame{Type: FrameData, Stream: 1, Data: []byte("hi\n")})
	r.frame(s1, DirRecv, Frame{Type: FrameData, Stream: 2, Data: []byte("✓\n")})
	r.frame(s1, DirRecv, Frame{Type: FrameData, Stream: math.MaxUint32, Data: []byte{0}})
	r.frame(s1, DirRecv, Frame{Type: FrameData, Stream: 1}) // empty data: omitted
	r.frame(s1, DirSend, Frame{Type: FrameSignal, Signal: 15})
	r.frame(s1, DirSend, Frame{Type: FrameSignal, Signal: -9})
	r.frame(s1, DirRecv, Frame{Type: FrameLog, Log: &LogEntry{Level: -4, Msg: "débogage"}})
	r.frame(s1, DirRecv, Frame{Type: FrameLog, Log: &LogEntry{Level: 0, Msg: "started", Attrs: []string{"pid=77", "cmd=sh -c x"}}})
	r.frame(s1, DirRecv, Frame{Type: FrameLog, Log: &LogEntry{Level: 4, Msg: "slow", Attrs: []string{}}})
	r.frame(s1, DirRecv, Frame{Type: FrameLog, Log: &LogEntry{Level: 8, Msg: ""}})
	r.frame(s1, DirRecv, Frame{Type: FrameLog, Log: &LogEntry{}})
	r.frame(s2, DirRecv, Frame{Type: FrameError, Error: "agent: 🙂 broke"})
	r.frame(s1, DirRecv, Frame{Type: FrameExit, Code: -1})
	r.frame(s2, DirRecv, Frame{Type: FrameExit, Code: math.MinInt64})
	r.frame(s1, DirRecv, Frame{Type: FrameType(99), Stream: 7, Data: []byte("future"), Code: math.MaxInt64})
	r.frame(s1, Direction(0), Frame{})
	r.frame(s1, Direction(7), Frame{Type: FrameExit})
	r.end(s1, -1)
	r.end(s2, math.MinInt64)

	// Command 3: PATH queries.
	x3 := ExecMsg{Path: "", Argv: nil, Env: nil, Cwd: ""}
	s3 := r.start(x3)
	r.frame(s3, DirSend, Frame{Type: FramePathQuery, Query: &PathQuery{}})
	r.frame(s3, DirSend, Frame{Type: FramePathQuery, Query: &PathQuery{Paths: []string{}}})
	r.frame(s3, DirSend, Frame{Type: FramePathQuery, Query: &PathQuery{Paths: []string{"/usr/local/bin", "/usr/bin", "/bin"}}})
	r.frame(s3, DirRecv, Frame{Type: FramePathInfo, Info: &PathInfo{}})
	r.frame(s3, DirRecv, Frame{Type: FramePathInfo, Info: &PathInfo{Entries: []PathInfoEntry{}}})
	r.frame(s3, DirRecv, Frame{Type: FramePathInfo, Info: &PathInfo{Entries: []PathInfoEntry{
		{Name: "ls", RemotePath: "/bin/ls", Mode: 0o755, Size: 142144, MTimeNanos: baseTime},
		{Name: "ünï", RemotePath: "/usr/local/bin/ünï", Mode: 1<<27 | 0o777, Size: 0},
		{},
	}}})
	r.end(s3, 0)

	// Command 4: every file op, requests and responses, several in flight.
	s4 := r.start(ExecMsg{Path: "/usr/local/bin/mproxy-agent", Argv: []string{"mproxy-agent", "--fileops"}, Env: []string{"A=1", "B="}, Cwd: "/"})
	reqs, resps := fileOpPairs()
	for i := range reqs {
		r.frame(s4, DirSend, Frame{Type: FrameFileOp, FileOp: &reqs[i]})
		if i%3 == 2 { // answer in batches: requests pipeline
			for j := i - 2; j <= i; j++ {
				r.frame(s4, DirRecv, Frame{Type: FrameFileResp, FileResp: &resps[j]})
			}
		}
	}
	for j := len(reqs) - len(reqs)%3; j < len(reqs); j++ {
		r.frame(s4, DirRecv, Frame{Type: FrameFileResp, FileResp: &resps[j]})
	}
	r.frame(s4, DirSend, Frame{Type: FrameFileOp, FileOp: &FileOpReq{}})
	r.frame(s4, DirRecv, Frame{Type: FrameFileResp, FileResp: &FileOpResp{}})
	r.end(s4, 255)
	r.footer()
	return r
}

// genInterleaved writes several concurrent commands with many data frames.
func genInterleaved(w io.Writer, frames int) *recorder {
	rnd := rand.New(rand.NewSource(42))
	r := newRecorder(w)
	r.header(SessionHeader{Version: "1.3.4", StartTime: baseTime, LocalUser: "ci", LocalPID: 1, AgentPath: "mproxy-agent"})
	var seqs []uint32
	for i := 0; i < 4; i++ {
		x := ExecMsg{Path: "/bin/cat", Argv: []string{"cat", fmt.Sprint(i)}, Env: []string{"I=" + fmt.Sprint(i)}, Cwd: "/tmp"}
		seq := r.start(x)
		seqs = append(seqs, seq)
		r.frame(seq, DirSend, Frame{Type: FrameExec, Exec: &x})
	}
	// every CBOR length-head boundary, and now and then a large chunk
	sizes := []int{0, 1, 23, 24, 255, 256, 1000, 4096, 65535, 65536}
	for i := 0; i < frames; i++ {
		seq := seqs[rnd.Intn(len(seqs))]
		size := sizes[rnd.Intn(len(sizes)-2)]
		if rnd.Intn(100) == 0 {
			size = sizes[len(sizes)-2+rnd.Intn(2)]
		}
		data := make([]byte, size)
		rnd.Read(data)
		switch k := rnd.Intn(10); {
		case k < 7:
			r.frame(seq, DirRecv, Frame{Type: FrameData, Stream: uint32(1 + k%2), Data: data})
		case k < 8:
			r.frame(seq, DirSend, Frame{Type: FrameData, Stream: 0, Data: data})
		case k < 9:
			r.frame(seq, DirRecv, Frame{Type: FrameLog, Log: &LogEntry{Level: 4 * (rnd.Intn(4) - 1), Msg: "tick", Attrs: []string{fmt.Sprintf("i=%d", i)}}})
		default:
			r.frame(seq, DirSend, Frame{Type: FrameFileOp, FileOp: &FileOpReq{ReqID: uint32(i), Op: FileOpWriteAt, Handle: 1, Offset: int64(i), Data: data}})
			r.frame(seq, DirRecv, Frame{Type: FrameFileResp, FileResp: &FileOpResp{ReqID: uint32(i), N: int64(len(data))}})
		}
	}
	for i, seq := range seqs {
		r.frame(seq, DirRecv, Frame{Type: FrameExit, Code: i - 1})
		r.end(seq, i-1)
	}
	r.footer()
	return r
}

// ---- hex vectors ---------------------------------------------------------------------

func vectors() map[string]interface{} {
	reqs, resps := fileOpPairs()
	x := ExecMsg{Path: "/bin/echo", Argv: []string{"echo", "hi"}, Env: []string{"LANG=C.UTF-8"}, Cwd: "/tmp", ExtraFDs: []uint32{3}}
	fs := fullStat()
	fsf := fullStatfs()
	return map[string]interface{}{
		"frame_zero":              Frame{},
		"frame_data":              Frame{Type: FrameData, Stream: 1, Data: []byte("hello")},
		"frame_stdin":             Frame{Type: FrameData, Data: []byte("x")},
		"frame_all_bytes":         Frame{Type: FrameData, Stream: 2, Data: allBytes()},
		"frame_stream_max":        Frame{Type: FrameEOF, Stream: math.MaxUint32},
		"frame_signal":            Frame{Type: FrameSignal, Signal: 15},
		"frame_signal_negative":   Frame{Type: FrameSignal, Signal: -9},
		"frame_exit_negative":     Frame{Type: FrameExit, Code: -1},
		"frame_exit_min":          Frame{Type: FrameExit, Code: math.MinInt64},
		"frame_exit_max":          Frame{Type: FrameExit, Code: math.MaxInt64},
		"frame_error_unicode":     Frame{Type: FrameError, Error: "échec ✓ 日本 🙂"},
		"frame_unknown_type":      Frame{Type: 99},
		"frame_exec":              Frame{Type: FrameExec, Exec: &x},
		"frame_log":               Frame{Type: FrameLog, Log: &LogEntry{Level: 8, Msg: "boom", Attrs: []string{"k=v"}}},
		"frame_config_zero":       Frame{Type: FrameConfig, Config: &AgentConfig{}},
		"frame_query":             Frame{Type: FramePathQuery, Query: &PathQuery{}},
		"frame_info":              Frame{Type: FramePathInfo, Info: &PathInfo{Entries: []PathInfoEntry{{Name: "ls", RemotePath: "/bin/ls", Mode: 0o755, Size: 1}}}},
		"frame_file_op":           Frame{Type: FrameFileOp, FileOp: &reqs[0]},
		"frame_file_resp":         Frame{Type: FrameFileResp, FileResp: &resps[0]},
		"frame_everything":        Frame{Type: FrameData, Stream: 1, Data: []byte{1}, Signal: 1, Code: 1, Error: "e", Exec: &ExecMsg{}, Log: &LogEntry{}, Config: &AgentConfig{}, Query: &PathQuery{}, Info: &PathInfo{}, FileOp: &FileOpReq{}, FileResp: &FileOpResp{}},
		"exec_zero":               ExecMsg{},
		"exec_env_nil":            ExecMsg{Path: "/bin/true", Argv: []string{"true"}, Env: nil, Cwd: "/"},
		"exec_env_empty":          ExecMsg{Path: "/bin/true", Argv: []string{"true"}, Env: []string{}, Cwd: "/"},
		"exec_argv_empty":         ExecMsg{Argv: []string{}},
		"exec_fds":                ExecMsg{Path: "p", Argv: []string{"a"}, Env: []string{"E=é"}, Cwd: "c", ExtraFDs: []uint32{3, 24, 256, 65536, math.MaxUint32}},
		"exec_fds_empty":          ExecMsg{ExtraFDs: []uint32{}},
		"config_nil":              AgentConfig{},
		"config_empty":            AgentConfig{EnvKeep: []string{}, EnvRemove: []string{}},
		"config_patterns":         AgentConfig{EnvKeep: []string{"PATH", "LC_*"}, EnvRemove: []string{"/^SSH_/"}},
		"log_zero":                LogEntry{},
		"log_debug":               LogEntry{Level: -4, Msg: "débogage"},
		"log_attrs":               LogEntry{Level: 4, Msg: "slow", Attrs: []string{"ms=1500", "op=ReadAt"}},
		"log_attrs_empty":         LogEntry{Level: 0, Msg: "x", Attrs: []string{}},
		"log_level_min":           LogEntry{Level: math.MinInt64, Msg: "m"},
		"path_query_zero":         PathQuery{},
		"path_query_empty":        PathQuery{Paths: []string{}},
		"path_query":              PathQuery{Paths: []string{"/usr/bin", "/bin"}},
		"path_info_nil":           PathInfo{},
		"path_info_empty":         PathInfo{Entries: []PathInfoEntry{}},
		"path_info":               PathInfo{Entries: []PathInfoEntry{{Name: "ls", RemotePath: "/bin/ls", Mode: 0o755, Size: 142144, MTimeNanos: baseTime}, {Name: "ünï", RemotePath: "/x/ünï", Mode: math.MaxUint32, Size: -1}}},
		"path_info_entry_zero":    PathInfoEntry{},
		"path_info_entry":         PathInfoEntry{Name: "sh", RemotePath: "/bin/sh", Mode: 1<<27 | 0o777, Size: 9, MTimeNanos: -1},
		"file_op_req_zero":        FileOpReq{},
		"file_op_req_open":        FileOpReq{ReqID: 7, Op: FileOpOpenFile, Path: "/tmp/f", Flags: 0o1101, Mode: 0o644},
		"file_op_req_full":        reqs[len(reqs)-1],
		"file_op_req_write":       FileOpReq{ReqID: math.MaxUint32, Op: FileOpWriteAt, Handle: 3, Offset: 1 << 40, Data: allBytes()},
		"file_op_req_flags_neg":   FileOpReq{ReqID: 1, Op: FileOpOpen, Flags: -1},
		"file_op_req_unknown_op":  FileOpReq{ReqID: 2, Op: 200},
		"file_op_resp_zero":       FileOpResp{},
		"file_op_resp_error":      FileOpResp{ReqID: 3, Errno: 2, ErrMsg: "no such file or directory"},
		"file_op_resp_read":       FileOpResp{ReqID: 4, Data: []byte("abc"), N: 3, EOF: true},
		"file_op_resp_stat_zero":  FileOpResp{ReqID: 5, Stat: &FileStat{}},
		"file_op_resp_stat":       FileOpResp{ReqID: 5, Stat: &fs},
		"file_op_resp_statfs":     FileOpResp{ReqID: 6, Statfs: &fsf},
		"file_op_resp_entries":    FileOpResp{ReqID: 7, Entries: []FileDirEntry{{Stat: FileStat{Name: "a", Size: 1, Mode: 0o644}}, {}}},
		"file_op_resp_entries_0":  FileOpResp{ReqID: 8, Entries: []FileDirEntry{}},
		"file_op_resp_full":       resps[len(resps)-1],
		"file_stat_zero":          FileStat{},
		"file_stat_full":          fs,
		"file_stat_dir":           FileStat{Name: "d", Size: 4096, Mode: 1<<31 | 0o755, IsDir: true},
		"file_statfs_zero":        FileStatfs{},
		"file_statfs_full":        fsf,
		"file_dir_entry_zero":     FileDirEntry{},
		"file_dir_entry":          FileDirEntry{Stat: FileStat{Name: "a", Size: 24, Mode: 0o600, MTimeNanos: baseTime}},
		"session_header":          SessionHeader{Version: "1.3.4", StartTime: baseTime, LocalUser: "alice", LocalPID: 4242, AgentPath: "/usr/bin/mproxy-agent"},
		"session_header_backend":  SessionHeader{Version: "1.3.4", StartTime: -1, LocalUser: "élise", LocalPID: -1, BackendType: "ssh", BackendAddr: "[::1]:22", AgentPath: ""},
		"session_header_zero":     SessionHeader{},
		"command_start":           CommandStart{SeqNum: 1, StartTime: baseTime, Exec: x},
		"command_start_zero":      CommandStart{},
		"recorded_frame":          RecordedFrame{SeqNum: 1, Timestamp: baseTime, Direction: DirRecv, Frame: Frame{Type: FrameData, Stream: 1, Data: []byte("out")}},
		"recorded_frame_extremes": RecordedFrame{SeqNum: math.MaxUint32, Timestamp: math.MinInt64, Direction: 255, Frame: Frame{Type: 255}},
		"recorded_frame_zero":     RecordedFrame{},
		"command_end":             CommandEnd{SeqNum: 2, EndTime: baseTime, ExitCode: 0},
		"command_end_negative":    CommandEnd{SeqNum: 2, EndTime: baseTime, ExitCode: -1},
		"command_end_extremes":    CommandEnd{SeqNum: math.MaxUint32, EndTime: math.MaxInt64, ExitCode: math.MinInt64},
		"session_footer":          SessionFooter{EndTime: baseTime, CommandCount: 3},
		"session_footer_zero":     SessionFooter{},
		"record_zero":             Record{},
		"record_unknown_type":     Record{Type: 9},
		"record_header":           Record{Type: RecordSessionHeader, Header: &SessionHeader{Version: "1.3.4", StartTime: baseTime, LocalUser: "alice", LocalPID: 4242, AgentPath: "/usr/bin/mproxy-agent"}},
		"record_cmd_start":        Record{Type: RecordCommandStart, CmdStart: &CommandStart{SeqNum: 1, StartTime: baseTime, Exec: ExecMsg{Path: "/bin/true", Argv: []string{"true"}, Cwd: "/"}}},
		"record_frame":            Record{Type: RecordFrame, Frame: &RecordedFrame{SeqNum: 1, Timestamp: baseTime, Direction: DirSend, Frame: Frame{Type: FrameData, Data: []byte("in")}}},
		"record_cmd_end":          Record{Type: RecordCommandEnd, CmdEnd: &CommandEnd{SeqNum: 1, EndTime: baseTime, ExitCode: 1}},
		"record_footer":           Record{Type: RecordSessionFooter, Footer: &SessionFooter{EndTime: baseTime, CommandCount: 1}},
	}
}

func vectorsHex() map[string]string {
	out := map[string]string{}
	for name, v := range vectors() {
		b, err := cbor.Marshal(v)
		must(err)
		out[name] = hex.EncodeToString(b)
	}
	return out
}

// ---- subcommands -----------------------------------------------------------------------

func writeFile(path string, data []byte) { must(os.WriteFile(path, data, 0o644)) }

func gen(dir string) {
	must(os.MkdirAll(dir, 0o755))
	manifest := map[string]interface{}{}

	var every bytes.Buffer
	re := genEveryType(&every)
	writeFile(filepath.Join(dir, "every-type.cbor"), every.Bytes())
	manifest["every-type.cbor"] = map[string]interface{}{"records": re.records, "complete": true}

	var inter bytes.Buffer
	ri := genInterleaved(&inter, 3000)
	writeFile(filepath.Join(dir, "interleaved.cbor"), inter.Bytes())
	manifest["interleaved.cbor"] = map[string]interface{}{"records": ri.records, "complete": true}

	// A crashed writer: no footer, the last frame record cut in its middle.
	var cut bytes.Buffer
	rc := newRecorder(&cut)
	rc.header(SessionHeader{Version: "1.3.4", StartTime: baseTime, LocalUser: "crash", LocalPID: 9, AgentPath: "a"})
	seq := rc.start(ExecMsg{Path: "/bin/yes", Argv: []string{"yes"}, Cwd: "/"})
	for i := 0; i < 5; i++ {
		rc.frame(seq, DirRecv, Frame{Type: FrameData, Stream: 1, Data: bytes.Repeat([]byte("y\n"), 50+i)})
	}
	complete := cut.Len()
	rc.frame(seq, DirRecv, Frame{Type: FrameData, Stream: 1, Data: bytes.Repeat([]byte("y\n"), 100)})
	cutAt := complete + (cut.Len()-complete)/2
	writeFile(filepath.Join(dir, "cut.cbor"), cut.Bytes()[:cutAt])
	manifest["cut.cbor"] = map[string]interface{}{"records": rc.records - 1, "complete": false, "cut_offset": complete, "size": cutAt}

	// The same, cleanly ended after a complete record but without a footer.
	writeFile(filepath.Join(dir, "no-footer.cbor"), cut.Bytes()[:complete])
	manifest["no-footer.cbor"] = map[string]interface{}{"records": rc.records - 1, "complete": false, "cut_offset": complete, "size": complete}

	// A connection's byte stream: every frame of every-type.cbor, in order.
	var frames bytes.Buffer
	n := 0
	dec := cbor.NewDecoder(bytes.NewReader(every.Bytes()))
	for {
		var rec Record
		if err := dec.Decode(&rec); err == io.EOF {
			break
		} else {
			must(err)
		}
		if rec.Frame != nil {
			b, err := cbor.Marshal(&rec.Frame.Frame)
			must(err)
			frames.Write(b)
			n++
		}
	}
	writeFile(filepath.Join(dir, "frames.cbor"), frames.Bytes())
	manifest["frames.cbor"] = map[string]interface{}{"frames": n}

	vb, err := json.MarshalIndent(vectorsHex(), "", " ")
	must(err)
	writeFile(filepath.Join(dir, "vectors.json"), vb)
	mb, err := json.MarshalIndent(manifest, "", " ")
	must(err)
	writeFile(filepath.Join(dir, "manifest.json"), mb)
}

// check strictly decodes every item of FILE into T, re-encodes it with the
// default options and compares the bytes. It returns the item count.
func check(path string, newItem func() interface{}) int {
	data, err := os.ReadFile(path)
	must(err)
	dm, err := cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
	}.DecMode()
	must(err)
	dec := dm.NewDecoder(bytes.NewReader(data))
	count := 0
	for {
		start := dec.NumBytesRead()
		item := newItem()
		err := dec.Decode(item)
		if errors.Is(err, io.EOF) {
			if start != int64(len(data)) {
				fail(fmt.Sprintf("item %d at byte %d: cut short (%d bytes left)", count, start, int64(len(data))-start))
			}
			return count
		}
		if err != nil {
			fail(fmt.Sprintf("item %d at byte %d: %v", count, start, err))
		}
		end := dec.NumBytesRead()
		again, err := cbor.Marshal(item)
		must(err)
		orig := data[start:end]
		if !bytes.Equal(orig, again) {
			i := 0
			for i < len(orig) && i < len(again) && orig[i] == again[i] {
				i++
			}
			fail(fmt.Sprintf("item %d at byte %d: re-encoding differs at byte %d (offset %d in the item)\n  read:   %x\n  go:     %x",
				count, start, start+int64(i), i, orig, again))
		}
		count++
	}
}

func bench(path string) {
	t0 := time.Now()
	records, n, size := decodeRecords(path, true)
	secs := time.Since(t0).Seconds()
	runtime.KeepAlive(records)
	out, _ := json.Marshal(map[string]interface{}{"records": n, "seconds": secs, "bytes": size})
	fmt.Println(string(out))
}

// ---- reader timing (benchmarks/read.py) --------------------------------------------

// cpuSeconds is the CPU time (user + system) this process has used so far.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	must(syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// decodeRecords reads a recording ReadRecording-style: one decoder over the
// file, every record into a fresh struct, kept in a slice when keep.
func decodeRecords(path string, keep bool) ([]Record, int, int64) {
	f, err := os.Open(path)
	must(err)
	defer f.Close()
	dec := cbor.NewDecoder(f)
	var records []Record
	n := 0
	for {
		var rec Record
		err := dec.Decode(&rec)
		if err == io.EOF {
			break
		}
		must(err)
		n++
		if keep {
			records = append(records, rec)
		}
	}
	return records, n, dec.NumBytesRead()
}

// readBench times the two ways a Go program reads a recording, on the same
// file: ReadRecording (one decoder, every record kept in a slice; the heap
// it holds is reported per record) and iteration (each record decoded into a
// fresh struct and dropped). Wall and CPU seconds of each, as JSON.
func readBench(path string) {
	out := map[string]interface{}{}
	for _, mode := range []string{"read", "iter"} {
		runtime.GC()
		t0, c0 := time.Now(), cpuSeconds()
		records, n, size := decodeRecords(path, mode == "read")
		out[mode+"_seconds"] = time.Since(t0).Seconds()
		out[mode+"_cpu_seconds"] = cpuSeconds() - c0
		out["records"], out["bytes"] = n, size
		if mode == "read" { // what holding the records costs
			var ms runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&ms)
			out["read_heap_bytes"] = ms.HeapAlloc
			runtime.KeepAlive(records)
		}
	}
	b, err := json.Marshal(out)
	must(err)
	fmt.Println(string(b))
}

// ---- agent mode: the Go agent's file-op service, for benchmarks/rpc.py ----------

// agentStat is what a Go FileOpServer answers for Stat/Lstat: os.FileInfo plus
// the platform stat_t.
func agentStat(fi os.FileInfo) *FileStat {
	st := &FileStat{Name: fi.Name(), Size: fi.Size(), Mode: uint32(fi.Mode()),
		MTimeNanos: fi.ModTime().UnixNano(), IsDir: fi.IsDir()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ATimeNanos = sys.Atim.Nano()
		st.CTimeNanos = sys.Ctim.Nano()
		st.UID, st.GID = sys.Uid, sys.Gid
		st.Nlink, st.Rdev = uint32(sys.Nlink), uint32(sys.Rdev)
		st.Blocks, st.Blksize, st.Ino = uint64(sys.Blocks), uint32(sys.Blksize), sys.Ino
	}
	return st
}

func agentFileOp(req *FileOpReq) *FileOpResp {
	var fi os.FileInfo
	var err error
	switch req.Op {
	case FileOpStat:
		fi, err = os.Stat(req.Path)
	case FileOpLstat:
		fi, err = os.Lstat(req.Path)
	default:
		return &FileOpResp{Errno: uint32(syscall.ENOSYS), ErrMsg: fmt.Sprintf("unknown file op %d", req.Op)}
	}
	if err != nil {
		resp := &FileOpResp{Errno: uint32(syscall.EIO), ErrMsg: err.Error()}
		var errno syscall.Errno
		if errors.As(err, &errno) {
			resp.Errno = uint32(errno)
		}
		return resp
	}
	return &FileOpResp{Stat: agentStat(fi)}
}

// agent is a Go Mux's read loop on the agent side: decode one frame at a time,
// serve file ops on the reading goroutine (answers in request order), send
// each answer with one Marshal and one Write under the send lock.
func agent() {
	dec := cbor.NewDecoder(os.Stdin)
	var sendMu sync.Mutex
	send := func(f *Frame) {
		b, err := cbor.Marshal(f)
		must(err)
		sendMu.Lock()
		defer sendMu.Unlock()
		if _, err := os.Stdout.Write(b); err != nil {
			os.Exit(0) // the runner is gone
		}
	}
	for {
		var f Frame
		if err := dec.Decode(&f); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return
			}
			fail("agent: " + err.Error())
		}
		switch f.Type {
		case FrameFileOp:
			if f.FileOp == nil {
				f.FileOp = &FileOpReq{}
			}
			resp := agentFileOp(f.FileOp)
			resp.ReqID = f.FileOp.ReqID
			send(&Frame{Type: FrameFileResp, FileResp: resp})
		case FramePathQuery:
			send(&Frame{Type: FramePathInfo, Info: &PathInfo{Entries: []PathInfoEntry{}}})
		}
	}
}

func must(err error) {
	if err != nil {
		fail(err.Error())
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "crosscheck:", msg)
	os.Exit(1)
}

func main() {
	if len(os.Args) < 2 {
		fail("usage: crosscheck gen DIR | vectors | check FILE | checkframes FILE | bench FILE | readbench FILE | agent")
	}
	arg := func() string {
		if len(os.Args) < 3 {
			fail(os.Args[1] + ": missing argument")
		}
		return os.Args[2]
	}
	switch os.Args[1] {
	case "gen":
		gen(arg())
	case "vectors":
		// encoding/json writes map keys sorted
		b, err := json.MarshalIndent(vectorsHex(), "", " ")
		must(err)
		fmt.Println(string(b))
	case "check":
		fmt.Println(check(arg(), func() interface{} { return &Record{} }), "records")
	case "checkframes":
		fmt.Println(check(arg(), func() interface{} { return &Frame{} }), "frames")
	case "bench":
		bench(arg())
	case "readbench":
		readBench(arg())
	case "agent":
		agent()
	default:
		fail("unknown subcommand " + os.Args[1])
	}
}
