# SPDX-License-Identifier: MIT
"""A minimal AML reader (ACPI 6.5, chapter 20 "ACPI Machine Language").

Only what finding a VM Generation ID's ADDR object needs: walk the term lists
of the tables' Scope and Device objects (the namespace), note every Name and
Method with its absolute path, and step over everything else by its
PkgLength.  Nothing is guessed: an opcode this reader does not know, where it
cannot be stepped over, ends the walk of the enclosing Scope, Device or table
(whose own PkgLength says where it ends) and is recorded in
Namespace.problems, so that "ADDR not found" can say what was not read.
"""

from dataclasses import dataclass, field

HEADER_LEN = 36  # the ACPI table header; the AML follows it

# Data objects (20.2.3).
ZERO_OP = 0x00
ONE_OP = 0x01
ONES_OP = 0xFF
BYTE_PREFIX = 0x0A
WORD_PREFIX = 0x0B
DWORD_PREFIX = 0x0C
STRING_PREFIX = 0x0D
QWORD_PREFIX = 0x0E
INTEGER_PREFIXES = {BYTE_PREFIX: 1, WORD_PREFIX: 2, DWORD_PREFIX: 4,
                    QWORD_PREFIX: 8}

# Name strings (20.2.2).
NULL_NAME = 0x00
DUAL_NAME_PREFIX = 0x2E
MULTI_NAME_PREFIX = 0x2F
ROOT_CHAR = 0x5C      # '\'
PARENT_PREFIX = 0x5E  # '^'
LEAD_NAME_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ_")
NAME_CHARS = LEAD_NAME_CHARS | frozenset(b"0123456789")

# Terms (20.2.5).
ALIAS_OP = 0x06
NAME_OP = 0x08
SCOPE_OP = 0x10
BUFFER_OP = 0x11
PACKAGE_OP = 0x12
VAR_PACKAGE_OP = 0x13
METHOD_OP = 0x14
EXTERNAL_OP = 0x15
LOCAL0_OP = 0x60
LOCAL7_OP = 0x67
STORE_OP = 0x70
ADD_OP = 0x72
INDEX_OP = 0x88
IF_OP = 0xA0
ELSE_OP = 0xA1
WHILE_OP = 0xA2
RETURN_OP = 0xA4
EXT_OP_PREFIX = 0x5B
# ...after EXT_OP_PREFIX:
MUTEX_OP = 0x01
EVENT_OP = 0x02
REVISION_OP = 0x30
OP_REGION_OP = 0x80
FIELD_OP = 0x81
DEVICE_OP = 0x82
PROCESSOR_OP = 0x83
POWER_RES_OP = 0x84
THERMAL_ZONE_OP = 0x85
INDEX_FIELD_OP = 0x86
BANK_FIELD_OP = 0x87
DATA_REGION_OP = 0x88
# Objects stepped over whole by their PkgLength: nothing of ours is inside.
SKIPPED_OPS = {IF_OP: "If", ELSE_OP: "Else", WHILE_OP: "While"}
SKIPPED_EXT_OPS = {PROCESSOR_OP: "Processor",
                   POWER_RES_OP: "PowerResource",
                   THERMAL_ZONE_OP: "ThermalZone",
                   INDEX_FIELD_OP: "IndexField", BANK_FIELD_OP: "BankField"}


class AmlError(ValueError):
    """Bytes this reader does not understand, at an offset of the table."""

    def __init__(self, offset: int, message: str):
        super().__init__(f"offset {offset:#x}: {message}")
        self.offset = offset


@dataclass(frozen=True)
class NameRef:
    """A NameString as written: '\\' (root), N '^' (parents), segments."""
    root: bool
    parents: int
    segs: tuple[str, ...]

    def __str__(self) -> str:
        prefix = "\\" if self.root else "^" * self.parents
        return prefix + ".".join(self.segs)


def path_str(path: tuple[str, ...]) -> str:
    return "\\" + ".".join(path)


def parse_path(text: str) -> tuple[str, ...]:
    """An absolute path as the kernel prints it (sysfs 'path': \\_SB_.VGEN)."""
    if not text.startswith("\\"):
        raise ValueError(f"{text!r} is not an absolute ACPI path")
    segs = tuple(s for s in text[1:].split(".") if s)
    for seg in segs:
        if len(seg) != 4:
            raise ValueError(f"{text!r}: bad name segment {seg!r}")
    return segs


def resolve(scope: tuple[str, ...], ref: NameRef, offset: int = 0
            ) -> tuple[str, ...]:
    """The absolute path @ref names from @scope, without the search rules:
    how declarations and multi-segment references resolve (5.3)."""
    if ref.root:
        return ref.segs
    if ref.parents > len(scope):
        raise AmlError(offset, f"{ref} goes above the root from "
                       f"{path_str(scope)}")
    return scope[:len(scope) - ref.parents] + ref.segs


def search_paths(scope: tuple[str, ...], ref: NameRef
                 ) -> list[tuple[str, ...]]:
    """Where a reference to @ref from @scope may land, in order: a single
    bare NameSeg is looked up in @scope, then in each parent up to the root
    (the namespace search rules, 5.3); anything else resolves directly."""
    if ref.root or ref.parents or len(ref.segs) != 1:
        return [resolve(scope, ref)]
    return [scope[:n] + ref.segs for n in range(len(scope), -1, -1)]


class Cursor:
    """Reads AML from data[pos:end]; every overrun is an AmlError."""

    def __init__(self, data: bytes, pos: int, end: int):
        self.data, self.pos, self.end = data, pos, end

    def at_end(self) -> bool:
        return self.pos >= self.end

    def peek(self) -> int:
        if self.pos >= self.end:
            raise AmlError(self.pos, "unexpected end of the object")
        return self.data[self.pos]

    def byte(self) -> int:
        value = self.peek()
        self.pos += 1
        return value

    def take(self, n: int) -> bytes:
        if self.pos + n > self.end:
            raise AmlError(self.pos, f"{n} bytes needed, "
                           f"{self.end - self.pos} left")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def expect(self, value: int, what: str) -> None:
        at = self.pos
        found = self.byte()
        if found != value:
            raise AmlError(at, f"expected {what} ({value:#04x}), "
                           f"found {found:#04x}")

    def pkg_value(self) -> int:
        """A number in PkgLength's encoding (20.2.4; a field's width in
        bits is one too).  Lead byte: bits 7-6 = how many bytes follow
        (0-3); with none, bits 5-0 are the value; otherwise bits 5-4 must
        be 0, bits 3-0 are the low nibble and each following byte adds 8
        more bits above it."""
        start = self.pos
        lead = self.byte()
        follow = lead >> 6
        if follow == 0:
            return lead & 0x3F
        if lead & 0x30:
            raise AmlError(start, f"PkgLength lead byte {lead:#04x} has "
                           "reserved bits 5-4 set")
        value = lead & 0x0F
        for i, b in enumerate(self.take(follow)):
            value |= b << (4 + 8 * i)
        return value

    def pkg_length(self) -> int:
        """A PkgLength; returns where the package ends (the length counts
        from the PkgLength's own first byte)."""
        start = self.pos
        length = self.pkg_value()
        follow = self.pos - start - 1
        end = start + length
        if length < 1 + follow or end > self.end:
            raise AmlError(start, f"PkgLength {length} runs outside its "
                           f"container (ends {end:#x}, container ends "
                           f"{self.end:#x})")
        return end

    def name_seg(self) -> str:
        at = self.pos
        raw = self.take(4)
        if raw[0] not in LEAD_NAME_CHARS or not all(c in NAME_CHARS
                                                     for c in raw[1:]):
            raise AmlError(at, f"bad NameSeg {raw!r}")
        return raw.decode("ascii")

    def name_string(self) -> NameRef:
        """NameString := '\\' NamePath | '^'* NamePath, NamePath := NameSeg |
        DualNamePrefix Seg Seg | MultiNamePrefix count Seg*count | NullName."""
        root, parents = False, 0
        if self.peek() == ROOT_CHAR:
            self.pos += 1
            root = True
        else:
            while self.peek() == PARENT_PREFIX:
                self.pos += 1
                parents += 1
        lead = self.peek()
        if lead == NULL_NAME:
            self.pos += 1
            segs = ()
        elif lead == DUAL_NAME_PREFIX:
            self.pos += 1
            segs = (self.name_seg(), self.name_seg())
        elif lead == MULTI_NAME_PREFIX:
            self.pos += 1
            segs = tuple(self.name_seg() for _ in range(self.byte()))
        else:
            segs = (self.name_seg(),)
        return NameRef(root, parents, segs)

    def integer(self, mask: int) -> int:
        """An integer constant: Zero, One, Ones, or a Byte/Word/DWord/QWord
        prefix and its little-endian value; masked to the table's integer
        width (32 bits in a revision 1 table, 64 from revision 2)."""
        at = self.pos
        op = self.byte()
        if op == ZERO_OP:
            return 0
        if op == ONE_OP:
            return 1
        if op == ONES_OP:
            return mask
        size = INTEGER_PREFIXES.get(op)
        if size is None:
            raise AmlError(at, f"expected an integer constant, found "
                           f"opcode {op:#04x}")
        return int.from_bytes(self.take(size), "little") & mask

    def string(self) -> bytes:
        self.expect(STRING_PREFIX, "String")
        nul = self.data.find(b"\0", self.pos, self.end)
        if nul < 0:
            raise AmlError(self.pos, "unterminated String")
        text = self.data[self.pos:nul]
        self.pos = nul + 1
        return text

    def skip_computational_data(self) -> None:
        """Step over a constant: integer, String, Buffer, Package,
        VarPackage or Revision (what a Name's value usually is)."""
        op = self.peek()
        if op == STRING_PREFIX:
            self.string()
        elif op in (BUFFER_OP, PACKAGE_OP, VAR_PACKAGE_OP):
            self.pos += 1
            self.pos = self.pkg_length()
        elif op == EXT_OP_PREFIX and self.pos + 1 < self.end \
                and self.data[self.pos + 1] == REVISION_OP:
            self.pos += 2
        else:
            self.integer(0)


@dataclass
class Table:
    """One DSDT or SSDT: its file name, bytes and header fields."""
    name: str
    data: bytes
    signature: str
    revision: int

    @property
    def int_mask(self) -> int:
        return (1 << 32) - 1 if self.revision < 2 else (1 << 64) - 1


def load_table(name: str, data: bytes) -> Table:
    if len(data) < HEADER_LEN:
        raise AmlError(0, f"{name}: {len(data)} bytes, shorter than a table "
                       "header")
    signature = data[0:4].decode("ascii", "replace")
    length = int.from_bytes(data[4:8], "little")
    if not HEADER_LEN <= length <= len(data):
        raise AmlError(4, f"{name}: header length {length}, file "
                       f"{len(data)} bytes")
    if signature not in ("DSDT", "SSDT"):
        raise AmlError(0, f"{name}: signature {signature!r}, not DSDT/SSDT")
    return Table(name, bytes(data[:length]), signature, data[8])


@dataclass(frozen=True)
class Region:
    """An OperationRegion with constant offset and length."""
    space: int
    offset: int
    length: int


@dataclass(frozen=True)
class FieldUnit:
    """A named field of a Field: @bits wide at bit @bit_offset of the
    region @region names from @scope."""
    scope: tuple[str, ...]
    region: NameRef
    bit_offset: int
    bits: int


@dataclass
class Decl:
    """A named object: kind 'name' (start:end = its value), 'method'
    (start:end = MethodFlags and body), 'device' (start:end = its term
    list), 'region' or 'field' (@value says what)."""
    kind: str
    path: tuple[str, ...]
    table: Table
    start: int
    end: int
    value: Region | FieldUnit | None = None

    def where(self) -> str:
        return f"{self.table.name} offset {self.start:#x}"


@dataclass
class Namespace:
    decls: dict[tuple[str, ...], list[Decl]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def add_table(self, table: Table) -> None:
        self._term_list(table, HEADER_LEN, len(table.data), ())

    def lookup(self, path: tuple[str, ...]) -> list[Decl]:
        return self.decls.get(path, [])

    def _declare(self, kind, path, table, start, end, value=None) -> None:
        self.decls.setdefault(path, []).append(
            Decl(kind, path, table, start, end, value))

    def _field(self, table: Table, c: Cursor, at: int, scope) -> None:
        """Field(Region, Flags) {Name, bits, ...}: each named field is
        declared with its bit offset; a field element this reader does not
        know ends the list (recorded: the fields after it are missing)."""
        end = c.pkg_length()
        region = c.name_string()
        c.byte()  # FieldFlags: access type, lock, update rule
        f = Cursor(table.data, c.pos, end)
        c.pos = end
        try:
            self._field_list(table, f, at, scope, region)
        except AmlError as err:
            self.problems.append(f"{table.name} Field({region}): {err}; "
                                 "the rest of this Field was not read")

    def _field_list(self, table, f: Cursor, at: int, scope, region) -> None:
        bit = 0
        while not f.at_end():
            lead = f.peek()
            if lead == 0x00:        # ReservedField: skip bits
                f.pos += 1
                bit += f.pkg_value()
            elif lead == 0x01:      # AccessField: AccessType, AccessAttrib
                f.take(3)
            elif lead in LEAD_NAME_CHARS:
                start = f.pos
                path = resolve(scope, NameRef(False, 0, (f.name_seg(),)), at)
                bits = f.pkg_value()
                self._declare("field", path, table, start, f.pos,
                              FieldUnit(scope, region, bit, bits))
                bit += bits
            else:
                raise AmlError(f.pos, f"field element {lead:#04x} not read "
                               "here")

    def _term_list(self, table: Table, pos: int, end: int,
                   scope: tuple[str, ...]) -> None:
        cursor = Cursor(table.data, pos, end)
        try:
            while not cursor.at_end():
                self._term(table, cursor, scope)
        except AmlError as err:
            self.problems.append(f"{table.name} {path_str(scope)}: {err}; "
                                 "the rest of this scope was not read")

    def _term(self, table: Table, c: Cursor, scope) -> None:
        at = c.pos
        op = c.byte()
        if op == SCOPE_OP:
            end = c.pkg_length()
            path = resolve(scope, c.name_string(), at)
            self._term_list(table, c.pos, end, path)
            c.pos = end
        elif op == NAME_OP:
            path = resolve(scope, c.name_string(), at)
            start = c.pos
            c.skip_computational_data()
            self._declare("name", path, table, start, c.pos)
        elif op == METHOD_OP:
            end = c.pkg_length()
            path = resolve(scope, c.name_string(), at)
            self._declare("method", path, table, c.pos, end)
            c.pos = end
        elif op == ALIAS_OP:
            c.name_string()
            c.name_string()
        elif op == EXTERNAL_OP:
            c.name_string()
            c.take(2)  # ObjectType, ArgumentCount
        elif op in SKIPPED_OPS:
            c.pos = c.pkg_length()
        elif op == EXT_OP_PREFIX:
            ext = c.byte()
            if ext == DEVICE_OP:
                end = c.pkg_length()
                path = resolve(scope, c.name_string(), at)
                self._declare("device", path, table, c.pos, end)
                self._term_list(table, c.pos, end, path)
                c.pos = end
            elif ext in SKIPPED_EXT_OPS:
                c.pos = c.pkg_length()
            elif ext == MUTEX_OP:
                c.name_string()
                c.take(1)  # SyncFlags
            elif ext == EVENT_OP:
                c.name_string()
            elif ext == FIELD_OP:
                self._field(table, c, at, scope)
            elif ext == OP_REGION_OP:
                path = resolve(scope, c.name_string(), at)
                start = c.pos
                space = c.byte()
                offset = c.integer(table.int_mask)  # constants only
                length = c.integer(table.int_mask)
                self._declare("region", path, table, start, c.pos,
                              Region(space, offset, length))
            elif ext == DATA_REGION_OP:
                c.name_string()
                for _ in range(3):  # Signature, OEM ID, OEM Table ID
                    c.skip_computational_data()
            else:
                raise AmlError(at, f"opcode 0x5b {ext:#04x} not read here")
        else:
            raise AmlError(at, f"opcode {op:#04x} not read here")


def read_namespace(tables: list[Table]) -> Namespace:
    ns = Namespace()
    for table in tables:
        ns.add_table(table)
    return ns
