// Fuzz target: the saga-file loader (parsing, checking, command templates, triggers).
//
// Every input is either refused with a SagaFileError (typed throws: nothing else can come
// out) that lists at least one problem, each placed inside the text (a line that exists, a
// column within it) with a message; or accepted, and then:
//   - loading it again gives the same sagas (the loader is deterministic);
//   - every saga has a non-empty name, unique in the file, and at least one step;
//   - each trigger belongs to its saga, and deciding and building a saga's input from any
//     payload (the input itself, here) neither traps nor changes the answer when asked twice.
import SagaLaneCoordinator
import SagaLaneDefinitions
import SagaLaneJSON

private func fail(_ what: String, _ input: UnsafeBufferPointer<UInt8>) -> Never {
    let shown = String(decoding: input.prefix(512), as: UTF8.self)
    fatalError("sagafile fuzz: \(what); input (\(input.count) bytes): \(shown)")
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSagaFile(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let input = UnsafeBufferPointer(start: data, count: size)
    // The loader takes text; bytes that are not UTF-8 never reach it.
    guard let text = String(validating: input, as: UTF8.self) else { return 0 }
    let lines = input.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
    let file: SagaFile
    do {
        file = try SagaFile(text: text, source: "fuzz")
    } catch {
        if error.problems.isEmpty { fail("a refusal with no problem in it", input) }
        for p in error.problems {
            guard p.line >= 1, p.line <= lines.count, p.column >= 1, p.column <= lines[p.line - 1].count + 1 else {
                fail("a problem placed outside the text: \(p.line):\(p.column) \(p.message)", input)
            }
            if p.message.isEmpty { fail("a problem without a message", input) }
        }
        let again: [SagaFileError.Problem]
        do { _ = try SagaFile(text: text, source: "fuzz"); fail("refused once, accepted the second time", input) } catch {
            again = error.problems
        }
        if again != error.problems { fail("two loads found different problems", input) }
        return 0
    }
    let again: SagaFile
    do { again = try SagaFile(text: text, source: "fuzz") } catch { fail("accepted once, refused the second time: \(error)", input) }
    if again.definitions.map(\.name) != file.definitions.map(\.name) { fail("two loads found different sagas", input) }
    var names: Set<[UInt8]> = []
    for definition in file.definitions {
        if definition.name.isEmpty || definition.steps.isEmpty { fail("a saga without a name or steps", input) }
        if !names.insert(Array(definition.name.utf8)).inserted { fail("two sagas named \(definition.name)", input) }
    }
    let payload = (try? JSON(parsing: input)) ?? .null
    for trigger in file.triggers {
        if !file.definitions.contains(where: { $0.name.utf8.elementsEqual(trigger.sagaType.utf8) }) {
            fail("a trigger for a saga the file does not define", input)
        }
        let event = Event(type: trigger.eventType, payload: payload)
        if trigger.matches(event) != trigger.matches(event) { fail("a trigger changed its mind", input) }
        if trigger.input(event) != trigger.input(event) { fail("a trigger built two inputs", input) }
    }
    return 0
}
