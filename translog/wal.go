package translog

import (
	"cmp"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/gatelog/gatelog/internal/envrecord"
)

// The sequence file (write-ahead log) is where a sequenced record becomes
// durable: a group commit appends its records to the current segment with
// one pwrite and makes them durable with one fdatasync. bbolt (store.go)
// stays the store's index, but it is written off the hot path by the
// applier from the records the segment already holds; on open, records
// the segment holds and bbolt does not are applied before anything else.
// Once bbolt holds every record of a segment, the segment is removed.
//
// A segment is a series of frames, each
//
//	length  uint32 LE  of the payload
//	crc     uint32 LE  CRC-32C of the payload, seeded with the previous frame's crc
//	payload            log index (8 bytes BE), leaf (uvarint length, bytes),
//	                   search hashes (uvarint count, 32 bytes each),
//	                   the record (envrecord.Frame) to the end
//
// and zeros after the last. The chained checksum ends a scan at the first
// frame that is not the one written after its predecessor: a torn write,
// the zeros, or a frame left behind by a group whose write failed and
// whose indexes were given again.
//
// Segments grow ahead of their writes, by writing zeros and syncing them
// (walChunk, doubling to walMaxChunk): an fdatasync of a write that
// changes neither the file's size nor its allocation has no metadata to
// write. fallocate alone would not do: ext4 marks fallocated blocks
// unwritten, and the first write to each then needs a journal commit.
const (
	walPrefix   = "wal-"
	walChunk    = 256 << 10
	walMaxChunk = 8 << 20
	walHeader   = 8
	// walMaxFrame bounds a frame's payload on reading, so that a corrupt
	// length cannot make a scan allocate without limit.
	walMaxFrame = 64 << 20
)

// walSegmentMax is the size past which a new segment is started (the
// tests lower it).
var walSegmentMax int64 = 64 << 20

var walTable = crc32.MakeTable(crc32.Castagnoli)

// walSegment is one segment file: first is its number (segments are
// numbered upwards, in the order they were written), last the index of
// the last record written to it (valid when used).
type walSegment struct {
	seqno uint64
	path  string
	last  uint64
	used  bool
}

// wal writes the sequence file's segments. Only the commit loop appends;
// the applier removes segments bbolt has fully absorbed.
type wal struct {
	dir string

	mu       sync.Mutex // guards segments (the applier removes from it)
	segments []walSegment

	f   *os.File // the current segment, segments[len-1]
	off int64    // where the next frame goes
	crc uint32   // the last frame's crc
	// written is off, for the grower.
	written atomic.Int64

	// growMu is held while f's preallocation grows, and while f changes.
	growMu sync.Mutex
	// prealloc is how far the current segment holds zeros, durably.
	prealloc atomic.Int64
	chunk    int64 // the next growth
	growWake chan struct{}
	growQuit chan struct{}
	growDone chan struct{}
	// dirty is where a failed write may have left frames, from off:
	// the next write covers them with zeros.
	dirty int64
	buf   []byte
	zeros []byte
}

func walName(dir string, seqno uint64) string {
	return filepath.Join(dir, fmt.Sprintf("%s%016x", walPrefix, seqno))
}

// walSegments lists the segment files in dir in the order they were
// written, removing leftover temporary files when clean is set.
func walSegments(dir string, clean bool) ([]walSegment, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var segs []walSegment
	for _, e := range ents {
		name := e.Name()
		if !strings.HasPrefix(name, walPrefix) {
			continue
		}
		if strings.HasSuffix(name, ".tmp") {
			if clean {
				if err := os.Remove(filepath.Join(dir, name)); err != nil {
					return nil, err
				}
			}
			continue
		}
		var seqno uint64
		if _, err := fmt.Sscanf(name[len(walPrefix):], "%016x", &seqno); err != nil || len(name) != len(walPrefix)+16 {
			return nil, fmt.Errorf("%w: %s in the store directory is not a sequence file segment", ErrCorrupt, name)
		}
		segs = append(segs, walSegment{seqno: seqno, path: filepath.Join(dir, name)})
	}
	slices.SortFunc(segs, func(a, b walSegment) int { return cmp.Compare(a.seqno, b.seqno) })
	return segs, nil
}

// scanWAL reads every segment in dir, in order, and yields the records
// from index from on: each must follow the one before (from, from+1, …);
// records below from (already in bbolt) are skipped. A segment's records
// end at its first frame that does not check; a gap in the indexes is
// corruption. A later segment is only started once the records before it
// are durable, and a write that failed is overwritten with zeros before
// the sequence moves on (wal.append), so a torn end is always the last.
func scanWAL(segs []walSegment, from uint64, yield func(*sequenceWrite) error) (uint64, error) {
	next := from
	for i := range segs {
		seg := &segs[i]
		raw, err := os.ReadFile(seg.path)
		if err != nil {
			return next, fmt.Errorf("%w: read sequence file: %w", ErrUnavailable, err)
		}
		crc := uint32(seg.seqno)
		for off := 0; ; {
			payload, c, ok := walFrameAt(raw, off, crc)
			if !ok {
				break
			}
			crc = c
			off += walHeader + len(payload)
			sw, err := decodeWALPayload(payload)
			if err != nil {
				return next, fmt.Errorf("%w: sequence file segment %s: %w", ErrCorrupt, filepath.Base(seg.path), err)
			}
			switch {
			case sw.index < next:
				continue
			case sw.index > next:
				return next, fmt.Errorf("%w: sequence file segment %s holds index %d where %d was due", ErrCorrupt, filepath.Base(seg.path), sw.index, next)
			}
			if err := yield(sw); err != nil {
				return next, err
			}
			seg.last, seg.used = sw.index, true
			next++
		}
	}
	return next, nil
}

// walFrameAt checks the frame at off: its payload and crc when it is
// whole and its checksum follows prev.
func walFrameAt(raw []byte, off int, prev uint32) ([]byte, uint32, bool) {
	if off+walHeader > len(raw) {
		return nil, 0, false
	}
	n := int(binary.LittleEndian.Uint32(raw[off:]))
	if n == 0 || n > walMaxFrame || off+walHeader+n > len(raw) {
		return nil, 0, false
	}
	payload := raw[off+walHeader : off+walHeader+n]
	c := crc32.Update(prev, walTable, payload)
	if c != binary.LittleEndian.Uint32(raw[off+4:]) {
		return nil, 0, false
	}
	return payload, c, true
}

func appendWALPayload(b []byte, sw *sequenceWrite) ([]byte, error) {
	b = binary.BigEndian.AppendUint64(b, sw.index)
	b = binary.AppendUvarint(b, uint64(len(sw.leaf)))
	b = append(b, sw.leaf...)
	b = binary.AppendUvarint(b, uint64(len(sw.search)))
	for _, h := range sw.search {
		if len(h) != 64 {
			return nil, fmt.Errorf("search hash %q is not a SHA-256", h)
		}
		var raw [32]byte
		if _, err := hex.Decode(raw[:], []byte(h)); err != nil {
			return nil, fmt.Errorf("search hash %q is not a SHA-256", h)
		}
		b = append(b, raw[:]...)
	}
	return append(b, sw.frame...), nil
}

func decodeWALPayload(p []byte) (*sequenceWrite, error) {
	if len(p) < 8 {
		return nil, errors.New("short record")
	}
	sw := &sequenceWrite{index: binary.BigEndian.Uint64(p)}
	p = p[8:]
	n, w := binary.Uvarint(p)
	if w <= 0 || n > uint64(len(p)-w) {
		return nil, fmt.Errorf("record %d: bad leaf", sw.index)
	}
	sw.leaf = slices.Clone(p[w : w+int(n)])
	p = p[w+int(n):]
	n, w = binary.Uvarint(p)
	if w <= 0 || n > uint64(len(p)-w)/32 {
		return nil, fmt.Errorf("record %d: bad search hashes", sw.index)
	}
	p = p[w:]
	for range n {
		sw.search = append(sw.search, hex.EncodeToString(p[:32]))
		p = p[32:]
	}
	sw.frame = slices.Clone(p)
	rec, err := envrecord.Decode(sw.frame)
	if err != nil {
		return nil, fmt.Errorf("record %d: %w", sw.index, err)
	}
	if rec.SET == nil {
		return nil, fmt.Errorf("record %d: no SET", sw.index)
	}
	sw.rec = rec
	return sw, nil
}

// openWAL starts a new segment after those listed (the segments scanWAL
// read, last set on those holding records from index applied on, which
// bbolt lacks): a new segment is durable, empty and grown by walChunk
// before the first record goes into it. The listed segments whose records
// bbolt holds are removed; the others once it does.
func openWAL(dir string, old []walSegment, applied uint64) (*wal, error) {
	w := &wal{dir: dir, chunk: walChunk, zeros: make([]byte, 1<<20),
		growWake: make(chan struct{}, 1), growQuit: make(chan struct{}), growDone: make(chan struct{})}
	var seqno uint64 = 1
	if len(old) > 0 {
		seqno = old[len(old)-1].seqno + 1
	}
	w.segments = slices.Clone(old)
	if err := w.startSegment(seqno); err != nil {
		return nil, err
	}
	if err := w.applied(applied); err != nil {
		w.f.Close()
		return nil, fmt.Errorf("%w: remove applied sequence file segment: %w", ErrUnavailable, err)
	}
	go w.growLoop()
	w.wakeGrower()
	return w, nil
}

// growLoop keeps the current segment preallocated walMaxChunk ahead of
// its writes (to walSegmentMax), so that a group commit rarely waits for
// a growth: growing writes zeros past the end of the file, and syncing
// them is a metadata write.
func (w *wal) growLoop() {
	defer close(w.growDone)
	for {
		select {
		case <-w.growQuit:
			return
		case <-w.growWake:
		}
		for {
			w.growMu.Lock()
			pre := w.prealloc.Load()
			if pre-w.written.Load() >= walMaxChunk || pre >= walSegmentMax || !w.roomFor(4*w.chunk) {
				w.growMu.Unlock()
				break
			}
			// A failure here is left to the commit loop: it grows the
			// segment itself when it must, and reports the error then.
			err := w.extend(pre + w.chunk)
			w.growMu.Unlock()
			if err != nil {
				break
			}
		}
	}
}

// roomFor reports whether the disk has n bytes free: the grower leaves
// the last of a disk to the writes that need it (bbolt's, the tiles'),
// and the commit loop grows the segment by what it needs then.
func (w *wal) roomFor(n int64) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(w.dir, &st); err != nil {
		return false
	}
	return int64(st.Bavail)*st.Bsize >= n
}

func (w *wal) wakeGrower() {
	select {
	case w.growWake <- struct{}{}:
	default:
	}
}

// startSegment creates segment seqno, grown by walChunk (if the disk has
// room), and makes it the
// current one: written in full and synced under a temporary name, then
// renamed, and the directory synced (which also makes the removal of
// earlier segments durable).
func (w *wal) startSegment(seqno uint64) error {
	path := walName(w.dir, seqno)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("%w: create sequence file segment: %w", ErrUnavailable, err)
	}
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("%w: create sequence file segment: %w", ErrUnavailable, err)
	}
	size := int64(walChunk)
	if err := w.zeroFill(f, 0, size); err != nil {
		// A disk nearly full: start empty, and let the writes grow it
		// by what they need.
		if terr := f.Truncate(0); terr != nil {
			return fail(errors.Join(err, terr))
		}
		size = 0
	}
	if err := unix.Fdatasync(int(f.Fd())); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	if err := syncDirectory(w.dir); err != nil {
		return fail(err)
	}
	// Opened again under its name, which its errors then give.
	if f, err = os.OpenFile(path, os.O_RDWR, 0); err != nil {
		return fmt.Errorf("%w: open sequence file segment: %w", ErrUnavailable, err)
	}
	w.growMu.Lock()
	w.mu.Lock()
	if w.f != nil {
		w.f.Close()
	}
	w.segments = append(w.segments, walSegment{seqno: seqno, path: path})
	w.mu.Unlock()
	w.f, w.off, w.crc = f, 0, uint32(seqno)
	w.written.Store(0)
	w.prealloc.Store(size)
	w.growMu.Unlock()
	return nil
}

func (w *wal) zeroFill(f *os.File, from, to int64) error {
	for off := from; off < to; {
		n := min(int64(len(w.zeros)), to-off)
		if _, err := f.WriteAt(w.zeros[:n], off); err != nil {
			return err
		}
		off += n
	}
	return nil
}

// extend grows the current segment's preallocation to to, with growMu
// held: zeros written past the end and synced; the next growth is twice
// as large, up to walMaxChunk.
func (w *wal) extend(to int64) error {
	if err := w.zeroFill(w.f, w.prealloc.Load(), to); err != nil {
		return err
	}
	if err := unix.Fdatasync(int(w.f.Fd())); err != nil {
		return err
	}
	w.prealloc.Store(to)
	w.chunk = min(2*w.chunk, walMaxChunk)
	return nil
}

// grow makes room for need bytes at w.off, unless the grower has.
func (w *wal) grow(need int64) error {
	w.growMu.Lock()
	defer w.growMu.Unlock()
	pre := w.prealloc.Load()
	if w.off+need <= pre {
		return nil
	}
	err := w.extend(max(pre+w.chunk, w.off+need))
	if err != nil && pre+w.chunk > w.off+need {
		// A disk nearly full may still hold what this write needs.
		w.chunk = walChunk
		err = w.extend(w.off + need)
	}
	return err
}

// append writes the records of one group commit (framed: sw.frame set)
// and makes them durable. When it fails nothing of the group counts: the
// next group is written at the same place, and the chained checksums end
// a scan before whatever the failed write left behind it.
func (w *wal) append(seqs []*sequenceWrite) error {
	buf := w.buf[:0]
	crc := w.crc
	for _, sw := range seqs {
		start := len(buf)
		buf = append(buf, make([]byte, walHeader)...)
		var err error
		if buf, err = appendWALPayload(buf, sw); err != nil {
			w.buf = buf[:0]
			return err
		}
		payload := buf[start+walHeader:]
		crc = crc32.Update(crc, walTable, payload)
		binary.LittleEndian.PutUint32(buf[start:], uint32(len(payload)))
		binary.LittleEndian.PutUint32(buf[start+4:], crc)
	}
	w.buf = buf[:0]
	need := int64(len(buf))
	if w.off > 0 && w.off+need > walSegmentMax {
		if w.dirty > w.off {
			if err := w.zeroFill(w.f, w.off, w.dirty); err != nil {
				return fmt.Errorf("clear failed write in sequence file: %w", err)
			}
			if err := unix.Fdatasync(int(w.f.Fd())); err != nil {
				return fmt.Errorf("sync sequence file: %w", err)
			}
			w.dirty = 0
		}
		w.mu.Lock()
		seqno := w.segments[len(w.segments)-1].seqno + 1
		w.mu.Unlock()
		if err := w.startSegment(seqno); err != nil {
			return err
		}
		return w.append(seqs)
	}
	write := buf
	if pad := w.dirty - (w.off + need); pad > 0 {
		// Zeros over what a failed write left after this one's end.
		write = append(buf, make([]byte, pad)...)
	}
	if w.off+int64(len(write)) > w.prealloc.Load() {
		if err := w.grow(int64(len(write))); err != nil {
			return fmt.Errorf("grow sequence file: %w", err)
		}
	}
	if _, err := w.f.WriteAt(write, w.off); err != nil {
		w.dirty = max(w.dirty, w.off+int64(len(write)))
		return fmt.Errorf("write sequence file: %w", err)
	}
	if err := unix.Fdatasync(int(w.f.Fd())); err != nil {
		w.dirty = max(w.dirty, w.off+int64(len(write)))
		return fmt.Errorf("sync sequence file: %w", err)
	}
	w.dirty = 0
	w.off += need
	w.crc = crc
	w.written.Store(w.off)
	w.wakeGrower()
	w.mu.Lock()
	cur := &w.segments[len(w.segments)-1]
	cur.last, cur.used = seqs[len(seqs)-1].index, true
	w.mu.Unlock()
	return nil
}

// applied removes the segments before the current one whose records are
// all below next (bbolt holds them).
func (w *wal) applied(next uint64) error {
	w.mu.Lock()
	var gone []walSegment
	for len(w.segments) > 1 && (!w.segments[0].used || w.segments[0].last < next) {
		gone = append(gone, w.segments[0])
		w.segments = w.segments[1:]
	}
	w.mu.Unlock()
	var errs []error
	for _, seg := range gone {
		// A removal that a power cut undoes is harmless: the records of
		// a resurrected segment are below what bbolt holds.
		if err := os.Remove(seg.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// close closes the current segment, and removes every segment when all
// records are below next (bbolt holds them all).
func (w *wal) close(next uint64) error {
	close(w.growQuit)
	<-w.growDone
	w.mu.Lock()
	defer w.mu.Unlock()
	err := w.f.Close()
	allApplied := true
	for _, seg := range w.segments {
		if seg.used && seg.last >= next {
			allApplied = false
		}
	}
	if !allApplied {
		return err
	}
	for _, seg := range w.segments {
		if rerr := os.Remove(seg.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = errors.Join(err, rerr)
		}
	}
	w.segments = nil
	return err
}

func syncDirectory(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
