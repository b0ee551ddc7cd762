import SagaLane

print("sagalane-bench \(SagaLaneVersion.string)")
