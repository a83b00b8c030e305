from autogaze.demo.cli import main

main()
